//! Packets per second through the real balancer, scenario by scenario,
//! against the floor measured in the same run.
//!
//! The generator sends a fixed number of packets per run out of gen0; the
//! balancer on lb0 sends them back out of lb0 (XDP_TX) to the sink on gen0.
//! The floor is the same path with the balancer replaced by a program that
//! only swaps MACs and returns XDP_TX: the most this machine can do on this
//! path, generator and veth included. A third reference drops every frame at
//! lb0 (the sink program there): what the generator and one veth hop cost.
//!
//! The connection table is churned first with three times its size in new
//! flows (a busy balancer's table is full and has seen flows come and go;
//! lookups in it cost more than in a fresh one). Each round runs the
//! reference once and every scenario once, each scenario right after a floor
//! run of its own that its ratio is taken against, so that load from other
//! work on this shared machine hits both alike. Figures are medians over
//! rounds with min and max. Each run is checked against the balancer's own
//! counters (every packet took the path the scenario is about); nothing is
//! asserted about speed.

use std::net::Ipv4Addr;

use tula_dataplane::{
    Backend, Counter, Counters, Dataplane, Dsr, LoadOptions, Protocol, Scheduler, VipKey, VipSpec,
};
use tula_maglev::{Ring, RingBackend};

use crate::bench_net::{self, BenchNet, GEN_IF, LB_ADDR, LB_IF};
use crate::samples::Samples;
use crate::size::Size;
use crate::traffic::{
    attached_program, Dst, Generator, RunStats, Sent, SinkCounts, TrafficSpec, XdpProgram,
};

/// The L3 DSR VIP of scenarios 1-3.
pub const VIP_L3: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The L2 DSR VIP of scenario 4.
pub const VIP_L2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
pub const VIP_PORT: u16 = 80;
/// Backends of each of the two VIPs above.
pub const SMALL_VIP_BACKENDS: u32 = 16;
/// Ports of the many-VIPs scenario: VIP j is 203.0.113.(6 + j / 4), port PORTS[j % 4].
const MANY_VIP_PORTS: [u16; 4] = [80, 443, 8080, 8443];

/// Sizes of one data-plane benchmark run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub size: Size,
    pub rounds: usize,
    /// Packets per timed run.
    pub packets: u32,
    /// Established flows of scenarios 1, 3 and 4.
    pub flows: u32,
    /// VIPs and backends per VIP of scenario 5.
    pub many_vips: u32,
    pub many_backends: u32,
    /// Established flows of scenario 5.
    pub many_flows: u32,
    pub load: LoadOptions,
    /// The CPU every run happens on.
    pub cpu: usize,
}

impl Plan {
    pub fn new(size: Size) -> Plan {
        fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
            std::env::var(name).ok().and_then(|v| v.parse().ok())
        }
        let (many_vips, many_backends) = size.pick((10, 10), (1000, 100));
        let cores = crate::machine::online_cores();
        Plan {
            size,
            rounds: size.rounds(),
            packets: size.pick(20_000, env("TULA_BENCH_PACKETS").unwrap_or(2_000_000)),
            flows: size.pick(1_000, 10_000),
            many_vips,
            many_backends,
            many_flows: size.pick(1_000, 100_000),
            load: LoadOptions {
                max_vips: size.pick(32, 1024),
                // The last id is the backend the SYN-flood test adds.
                max_backends: first_many_backend() + many_vips * many_backends + 1,
                max_backend_addresses: LoadOptions::default().max_backend_addresses,
                ring_size: size.pick(257, tula_maglev::DEFAULT_RING_SIZE),
                conn_table_size: size.pick(65_536, 1_000_000),
                pin_dir: None,
            },
            cpu: env("TULA_BENCH_CPU").unwrap_or(cores - 1),
        }
    }
}

/// Backend ids: 0..16 the L3 VIP's, 16..32 the L2 VIP's, then scenario 5's.
fn first_many_backend() -> u32 {
    2 * SMALL_VIP_BACKENDS
}

/// VIP `j` of scenario 5.
pub fn many_vip(j: u32) -> Dst {
    Dst {
        addr: Ipv4Addr::new(203, 0, 113, 6 + (j / 4) as u8),
        port: MANY_VIP_PORTS[j as usize % 4],
        protocol: Protocol::Tcp,
    }
}

fn vip_key(dst: Dst) -> VipKey {
    VipKey {
        addr: dst.addr.into(),
        port: dst.port,
        protocol: dst.protocol,
    }
}

pub fn l3_vip() -> Dst {
    Dst {
        addr: VIP_L3,
        port: VIP_PORT,
        protocol: Protocol::Tcp,
    }
}

fn l2_vip() -> Dst {
    Dst {
        addr: VIP_L2,
        port: VIP_PORT,
        protocol: Protocol::Tcp,
    }
}

/// Traffic that is for no VIP: UDP to the balancer host's own address (its
/// kernel finds no socket and drops it).
fn not_vip() -> Dst {
    Dst {
        addr: LB_ADDR,
        port: 9,
        protocol: Protocol::Udp,
    }
}

/// 10000 as "10,000".
pub fn thousands(n: u32) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Ring of `backends` (id, address) pairs.
pub fn ring_of(backends: &[(u32, Ipv4Addr)], ring_size: u32) -> Ring {
    let members: Vec<RingBackend> = backends
        .iter()
        .map(|&(id, addr)| RingBackend {
            id,
            key: addr.to_string(),
            weight: 1,
        })
        .collect();
    Ring::build(&members, ring_size).expect("building a Maglev ring")
}

/// The L3 VIP's backends: ids 0..16.
pub fn l3_backends() -> Vec<(u32, Ipv4Addr)> {
    (0..SMALL_VIP_BACKENDS)
        .map(|i| (i, bench_net::l3_backend(i)))
        .collect()
}

/// Loads the balancer and programs every scenario's VIPs and backends.
pub fn load_balancer(plan: &Plan) -> Dataplane {
    let mut dp = Dataplane::load(&plan.load).expect("loading the balancer");
    let ring_size = dp.ring_size();
    let set = |dp: &mut Dataplane, backends: &[(u32, Ipv4Addr)]| {
        for &(id, addr) in backends {
            dp.set_backend(id, &Backend { addr: addr.into(), alive: true })
                .unwrap_or_else(|e| panic!("setting backend {id}: {e}"));
        }
    };
    let spec = |id, dsr| VipSpec {
        id,
        dsr,
        scheduler: Scheduler::Maglev,
        icmp_echo: false,
    };
    let l3 = l3_backends();
    set(&mut dp, &l3);
    dp.set_vip(
        &vip_key(l3_vip()),
        &spec(0, Dsr::L3Ipip),
        ring_of(&l3, ring_size).slots(),
    )
    .expect("setting the L3 VIP");
    let l2: Vec<(u32, Ipv4Addr)> = (0..SMALL_VIP_BACKENDS)
        .map(|i| (SMALL_VIP_BACKENDS + i, bench_net::l2_backend(i)))
        .collect();
    set(&mut dp, &l2);
    dp.set_vip(
        &vip_key(l2_vip()),
        &spec(1, Dsr::L2),
        ring_of(&l2, ring_size).slots(),
    )
    .expect("setting the L2 VIP");
    for j in 0..plan.many_vips {
        // Every VIP has its own backend ids over the same 100 servers, as the control plane assigns them.
        let backends: Vec<(u32, Ipv4Addr)> = (0..plan.many_backends)
            .map(|k| {
                let id = first_many_backend() + j * plan.many_backends + k;
                (id, bench_net::l3_backend(256 + k))
            })
            .collect();
        set(&mut dp, &backends);
        dp.set_vip(
            &vip_key(many_vip(j)),
            &spec(2 + j, Dsr::L3Ipip),
            ring_of(&backends, ring_size).slots(),
        )
        .unwrap_or_else(|e| panic!("setting VIP {j} of the many-VIPs scenario: {e}"));
    }
    dp
}

/// What the balancer's counters must show for a scenario's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Every packet an LRU hit, sent back out (XDP_TX).
    Established,
    /// Every packet an LRU miss placed by the ring, sent back out.
    NewFlow,
    /// Half LRU hits sent out, half not for a VIP and passed to the kernel.
    HalfNotVip,
}

/// One data-plane scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub traffic: TrafficSpec,
    pub path: Path,
}

impl Scenario {
    /// Established flows must be in the connection table before the timed run.
    fn needs_priming(&self) -> bool {
        self.path != Path::NewFlow
    }
}

/// The five scenarios of issue 8, at `plan`'s size.
pub fn scenarios(plan: &Plan) -> Vec<Scenario> {
    let many: Vec<Dst> = (0..plan.many_vips).map(many_vip).collect();
    vec![
        Scenario {
            name: format!(
                "1 {} established flows (table hits), L3 DSR",
                thousands(plan.flows)
            ),
            traffic: TrafficSpec::established(plan.flows, 0, vec![l3_vip()]),
            path: Path::Established,
        },
        Scenario {
            name: "2 new flows (SYN flood), L3 DSR".into(),
            traffic: TrafficSpec::syn_flood(vec![l3_vip()]),
            path: Path::NewFlow,
        },
        Scenario {
            name: "3 VIP / non-VIP mix, 1:1".into(),
            traffic: TrafficSpec::established(plan.flows, 0, vec![l3_vip(), not_vip()]),
            path: Path::HalfNotVip,
        },
        Scenario {
            name: format!("4 {} established flows, L2 DSR", thousands(plan.flows)),
            traffic: TrafficSpec::established(plan.flows, 0, vec![l2_vip()]),
            path: Path::Established,
        },
        Scenario {
            name: format!(
                "5 {} VIPs x {} backends, {} flows",
                thousands(plan.many_vips),
                plan.many_backends,
                thousands(plan.many_flows)
            ),
            traffic: TrafficSpec::established(plan.many_flows, 0, many),
            path: Path::Established,
        },
    ]
}

/// The generator config of the floor and the drop reference (scenario 1's).
fn reference_traffic(plan: &Plan) -> TrafficSpec {
    TrafficSpec::established(plan.flows, 0, vec![l3_vip()])
}

/// One timed run.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub sent: Sent,
    pub sink: SinkCounts,
    /// Balancer counters over the run (None for the floor and the reference).
    pub counters: Option<Counters>,
}

impl RunResult {
    /// Nanoseconds per packet for the whole path, by the kernel's own timer
    /// of the test-run loop: generator, veth, lb0's program and the sink all
    /// run inside it on one CPU. Setup and teardown of the run (a fixed ~30 ms
    /// here) and time the CPU spent on other tasks are not in it.
    pub fn ns_per_packet(&self) -> f64 {
        self.sent.kernel_per_packet.as_nanos() as f64
    }

    /// Packets per second the generator pushed into the path, in millions.
    pub fn offered_mpps(&self) -> f64 {
        1e3 / self.ns_per_packet()
    }

    /// Frames that reached the sink per second, in millions (at the offered pace).
    pub fn delivered_mpps(&self) -> f64 {
        self.offered_mpps() * self.sink.frames as f64 / self.sent.packets as f64
    }

    /// The same by the wall clock around the whole test-run system call.
    pub fn wall_mpps(&self) -> f64 {
        self.sent.mpps()
    }

    /// IPv4 packets the balancer saw (sum of its verdicts, less the frames
    /// that were not IPv4: a stray ARP from a namespace's kernel is not ours).
    pub fn seen(&self) -> Option<u64> {
        self.counters.as_ref().map(|c| {
            [Counter::Pass, Counter::Tx, Counter::Redirect, Counter::Drop]
                .into_iter()
                .map(|v| c.get(v))
                .sum::<u64>()
                - c.get(Counter::NotIpv4)
        })
    }
}

/// Figures of one row of the table, one sample per round.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub name: String,
    pub offered: Samples,
    pub delivered: Samples,
    pub ns_per_packet: Samples,
    /// Delivered Mpps over that of the floor run made just before.
    pub ratio: Samples,
    /// That floor run's ns per packet.
    pub floor_ns: Samples,
    /// The last round's run, for its packet counts.
    pub last: Option<RunResult>,
}

/// The floor, the drop reference and the balancer, ready to be swapped on lb0.
pub struct Bench<'a> {
    pub net: &'a BenchNet,
    pub plan: &'a Plan,
    pub dp: Dataplane,
    pub generator: Generator,
    pub sink: XdpProgram,
    floor: XdpProgram,
    lb_drop: XdpProgram,
}

/// What is attached to lb0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLb {
    Balancer,
    Floor,
    /// The sink program: every frame dropped at lb0.
    Drop,
}

impl<'a> Bench<'a> {
    /// Loads everything; the sink goes on gen0 and stays there. Call from the gen namespace.
    pub fn new(net: &'a BenchNet, plan: &'a Plan) -> Bench<'a> {
        let dp = load_balancer(plan);
        let generator = Generator::load(net.gen_link.mac, net.lb_link.mac);
        let mut sink = XdpProgram::sink();
        sink.attach(GEN_IF);
        Bench {
            net,
            plan,
            dp,
            generator,
            sink,
            floor: XdpProgram::floor(),
            lb_drop: XdpProgram::sink(),
        }
    }

    /// Puts `which` on lb0, detaching whatever was there.
    pub fn put_on_lb(&mut self, which: OnLb) {
        let (dp, floor, lb_drop) = (&mut self.dp, &mut self.floor, &mut self.lb_drop);
        self.net
            .lb
            .run(|| {
                if dp.attached().iter().any(|i| i == LB_IF) {
                    dp.detach(LB_IF).expect("detaching the balancer from lb0");
                }
                floor.detach();
                lb_drop.detach();
                match which {
                    OnLb::Balancer => {
                        dp.attach(LB_IF).expect("attaching the balancer to lb0");
                    }
                    OnLb::Floor => floor.attach(LB_IF),
                    OnLb::Drop => lb_drop.attach(LB_IF),
                }
            })
            .expect("entering the lb namespace");
    }

    /// Sends `packets` as the generator is configured, and counts what the
    /// sink (and, with `with_counters`, the balancer) saw.
    pub fn run(&self, packets: u32, with_counters: bool) -> RunResult {
        let counters_before = with_counters.then(|| self.dp.counters().expect("reading counters"));
        let sink_before = self.sink.settled_sink_counts();
        let sent = self.generator.send(self.net.gen_link.index, packets);
        let sink = self.sink.settled_sink_counts().since(&sink_before);
        let counters = counters_before
            .map(|before| self.dp.counters().expect("reading counters").since(&before));
        RunResult {
            sent,
            sink,
            counters,
        }
    }

    /// Primes (if needed) and runs one scenario, checking the path it took.
    pub fn run_scenario(&mut self, scenario: &Scenario, packets: u32) -> RunResult {
        self.generator.configure(&scenario.traffic);
        if scenario.needs_priming() {
            self.generator
                .send(self.net.gen_link.index, scenario.traffic.flows);
            self.generator.configure(&scenario.traffic);
        }
        let result = self.run(packets, true);
        check_path(scenario, &result);
        result
    }
}

/// Panics unless the balancer's counters show that the run took `scenario`'s path.
fn check_path(scenario: &Scenario, result: &RunResult) {
    if let Err(wrong) = path_taken(scenario, result) {
        panic!("{wrong}");
    }
}

/// Whether the balancer's counters show that the run took `scenario`'s path,
/// else what they show instead.
fn path_taken(scenario: &Scenario, result: &RunResult) -> Result<(), String> {
    let c = result
        .counters
        .as_ref()
        .expect("balancer runs read counters");
    let seen = result.seen().unwrap_or(0);
    let name = &scenario.name;
    if seen == 0 || seen > result.sent.packets {
        return Err(format!(
            "{name}: the balancer saw {seen} of {} packets",
            result.sent.packets
        ));
    }
    let (hit, miss, not_vip, tx) = (
        c.get(Counter::LruHit),
        c.get(Counter::LruMiss),
        c.get(Counter::NotVip),
        c.get(Counter::Tx),
    );
    let ok = match scenario.path {
        Path::Established => hit == seen && tx == seen,
        Path::NewFlow => miss == seen && tx == seen,
        // Flows alternate between the VIP and the host, so halves differ by at most one per batch cut.
        Path::HalfNotVip => {
            hit == tx && hit + not_vip == seen && hit.abs_diff(not_vip) <= seen / 100 + 2
        }
    };
    if ok {
        return Ok(());
    }
    Err(format!(
        "{name}: took another path: seen {seen}, lru_hit {hit}, lru_miss {miss}, not_vip {not_vip}, tx {tx}, counters {c:?}"
    ))
}

/// Every figure of one data-plane benchmark run.
pub struct Report {
    pub floor: Row,
    pub drop: Row,
    pub scenarios: Vec<Row>,
    /// The floor and scenario 1 before the connection table was churned.
    pub fresh_table: (RunResult, RunResult),
    pub breakdown: Vec<Breakdown>,
}

/// Where one packet's time went in a run with BPF run-time statistics on.
#[derive(Debug, Clone)]
pub struct Breakdown {
    pub name: String,
    /// The whole path per packet (the kernel's timer of the test-run loop).
    pub path_ns: f64,
    pub generator_ns: f64,
    /// The program on lb0 (balancer, floor or drop), per packet offered.
    pub lb_ns: f64,
    pub sink_ns: f64,
}

impl Breakdown {
    /// What the programs do not account for: page pool, veth rings, NAPI,
    /// XDP_TX, the kernel stack for passed packets.
    pub fn kernel_ns(&self) -> f64 {
        self.path_ns - self.generator_ns - self.lb_ns - self.sink_ns
    }
}

/// Runs every round and the breakdown. Call from a thread in the gen namespace.
pub fn measure(bench: &mut Bench<'_>) -> Report {
    let plan = bench.plan;
    let scenarios = scenarios(plan);
    let mut floor = Row {
        name: FLOOR_NAME.into(),
        ..Row::default()
    };
    let mut drop = Row {
        name: DROP_NAME.into(),
        ..Row::default()
    };
    let mut rows: Vec<Row> = scenarios
        .iter()
        .map(|s| Row {
            name: s.name.clone(),
            ..Row::default()
        })
        .collect();
    // Scenario 1 once on the fresh table, for comparison (evidence only).
    bench.generator.configure(&reference_traffic(plan));
    bench.put_on_lb(OnLb::Floor);
    let fresh_floor = bench.run(plan.packets, false);
    bench.put_on_lb(OnLb::Balancer);
    let fresh = bench.run_scenario(&scenarios[0], plan.packets);
    // A balancer that has run for a while has a full connection table that
    // has seen many flows come and go (LRU entries never expire). Lookups in
    // such a table cost more than in a fresh one (its entries are scattered
    // in memory): churn it first -- three times its size in new flows -- so
    // that every round sees the steady state.
    bench
        .generator
        .configure(&TrafficSpec::syn_flood(vec![l3_vip()]));
    for _ in 0..3 {
        bench
            .generator
            .send(bench.net.gen_link.index, plan.load.conn_table_size);
    }
    for _ in 0..plan.rounds {
        bench.generator.configure(&reference_traffic(plan));
        bench.put_on_lb(OnLb::Drop);
        let drop_run = bench.run(plan.packets, false);
        let mut paired = (f64::NAN, f64::NAN);
        for (scenario, row) in scenarios.iter().zip(rows.iter_mut()) {
            // Each scenario is compared with a floor run made just before it.
            bench.generator.configure(&reference_traffic(plan));
            bench.put_on_lb(OnLb::Floor);
            let floor_run = bench.run(plan.packets, false);
            paired = (floor_run.delivered_mpps(), floor_run.ns_per_packet());
            push(&mut floor, floor_run, paired);
            bench.put_on_lb(OnLb::Balancer);
            let result = bench.run_scenario(scenario, plan.packets);
            push(row, result, paired);
        }
        push(&mut drop, drop_run, paired);
    }
    let breakdown = breakdown(bench, &scenarios);
    Report {
        floor,
        drop,
        scenarios: rows,
        fresh_table: (fresh_floor, fresh),
        breakdown,
    }
}

/// Adds `result` to `row`, against its paired floor run's (delivered Mpps, ns per packet).
fn push(row: &mut Row, result: RunResult, (floor_delivered, floor_ns): (f64, f64)) {
    row.offered.push(result.offered_mpps());
    row.ns_per_packet.push(result.ns_per_packet());
    row.delivered.push(result.delivered_mpps());
    row.ratio.push(result.delivered_mpps() / floor_delivered);
    row.floor_ns.push(floor_ns);
    row.last = Some(result);
}

/// Scenarios run only in the breakdown, to tell apart what makes scenario 5
/// slower than scenario 1: the number of flows, or the number of VIPs and backends.
fn evidence_scenarios(plan: &Plan) -> Vec<Scenario> {
    let many: Vec<crate::traffic::Dst> = (0..plan.many_vips).map(many_vip).collect();
    vec![
        Scenario {
            name: format!(
                "  5a 1 VIP x {SMALL_VIP_BACKENDS} backends, {} flows",
                thousands(plan.many_flows)
            ),
            traffic: TrafficSpec::established(plan.many_flows, 0, vec![l3_vip()]),
            path: Path::Established,
        },
        Scenario {
            name: format!(
                "  5b {} VIPs x {} backends, {} flows",
                thousands(plan.many_vips),
                plan.many_backends,
                thousands(plan.flows)
            ),
            traffic: TrafficSpec::established(plan.flows, 0, many),
            path: Path::Established,
        },
    ]
}

/// One more run of each configuration with BPF run-time statistics on. They
/// add their own cost (two clock reads per program run), so the timed rounds
/// run without; here they show how a path's time splits between programs.
fn breakdown(bench: &mut Bench<'_>, scenarios: &[Scenario]) -> Vec<Breakdown> {
    let packets = bench.plan.packets;
    let _stats =
        aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("enabling BPF run-time statistics");
    let mut out = Vec::new();
    let mut measure_one = |bench: &mut Bench<'_>, name: &str, scenario: Option<&Scenario>| {
        let lb_program = || {
            bench
                .net
                .lb
                .run(|| RunStats::of(&attached_program(LB_IF)))
                .expect("entering the lb namespace")
        };
        if let Some(s) = scenario {
            bench.generator.configure(&s.traffic);
            if s.needs_priming() {
                bench
                    .generator
                    .send(bench.net.gen_link.index, s.traffic.flows);
                bench.generator.configure(&s.traffic);
            }
        }
        let (gen0, lb0, sink0) = (
            RunStats::of(&bench.generator.info()),
            lb_program(),
            RunStats::of(&bench.sink.info()),
        );
        let result = bench.run(packets, scenario.is_some());
        // The breakdown is evidence, not a figure of its own: a run that strayed
        // from its path is reported with the table, not fatal to the figures.
        if let Some(s) = scenario {
            if let Err(wrong) = path_taken(s, &result) {
                println!("  breakdown run off its path (its row still shown): {}", wrong.trim_start());
            }
        }
        let (gen1, lb1, sink1) = (
            RunStats::of(&bench.generator.info()),
            lb_program(),
            RunStats::of(&bench.sink.info()),
        );
        let per_packet = |d: RunStats| d.time.as_nanos() as f64 / result.sent.packets as f64;
        out.push(Breakdown {
            name: name.to_string(),
            path_ns: result.ns_per_packet(),
            generator_ns: per_packet(gen1.since(&gen0)),
            lb_ns: per_packet(lb1.since(&lb0)),
            sink_ns: per_packet(sink1.since(&sink0)),
        });
    };
    bench.generator.configure(&reference_traffic(bench.plan));
    bench.put_on_lb(OnLb::Floor);
    measure_one(bench, FLOOR_NAME, None);
    bench.put_on_lb(OnLb::Drop);
    measure_one(bench, DROP_NAME, None);
    bench.put_on_lb(OnLb::Balancer);
    for s in scenarios.iter().chain(&evidence_scenarios(bench.plan)) {
        measure_one(bench, &s.name, Some(s));
    }
    out
}

const FLOOR_NAME: &str = "floor: MAC swap + XDP_TX on lb0";
const DROP_NAME: &str = "reference: lb0 drops (generator + 1 hop)";

impl Report {
    /// The figures as text tables.
    pub fn print(&self, plan: &Plan) {
        println!(
            "\ndata plane: {} packets per run, {} round(s), medians (min-max); generator, balancer and sink share CPU {}",
            plan.packets, plan.rounds, plan.cpu
        );
        println!(
            "  {:<44} {:>19} {:>19} {:>19} {:>17}",
            "path", "offered Mpps", "delivered Mpps", "ns per packet", "ratio to floor"
        );
        let floor_ns = self.floor.ns_per_packet.median();
        for row in [&self.floor, &self.drop].into_iter().chain(&self.scenarios) {
            let delivered_nothing = row.delivered.max() == 0.0;
            println!(
                "  {:<44} {:>19} {:>19} {:>19} {:>17}",
                row.name,
                row.offered.show(2),
                if delivered_nothing {
                    "-".into()
                } else {
                    row.delivered.show(2)
                },
                row.ns_per_packet.show(1),
                if delivered_nothing {
                    "-".into()
                } else {
                    row.ratio.show(2)
                },
            );
        }
        println!("\n  ns per packet, round by round:");
        for row in [&self.floor, &self.drop].into_iter().chain(&self.scenarios) {
            let values: Vec<String> = row
                .ns_per_packet
                .values()
                .iter()
                .map(|v| format!("{v:.0}"))
                .collect();
            println!("  {:<44} {}", row.name, values.join(" "));
        }
        let (fresh_floor, fresh) = &self.fresh_table;
        println!(
            "\n  {} on a fresh connection table, once: {:.2} Mpps, {:.1} ns per packet, {:.2} of its floor ({:.2} Mpps)",
            self.scenarios[0].name,
            fresh.delivered_mpps(),
            fresh.ns_per_packet(),
            fresh.delivered_mpps() / fresh_floor.delivered_mpps(),
            fresh_floor.delivered_mpps()
        );
        println!("\n  last round: packets offered -> seen by the balancer -> delivered; extra ns per packet over the floor; wall-clock Mpps");
        for row in &self.scenarios {
            if let Some(r) = &row.last {
                println!(
                    "  {:<44} {} -> {} -> {} (IPIP {}, other {}); +{:.1} ns; wall {:.2} Mpps",
                    row.name,
                    r.sent.packets,
                    r.seen().unwrap_or(0),
                    r.sink.frames,
                    r.sink.ipip,
                    r.sink.other,
                    r.ns_per_packet() - floor_ns,
                    r.wall_mpps()
                );
            }
        }
        println!("\n  where a packet's time goes, ns per packet offered (one run with BPF run-time statistics on: they cost ~40 ns per program run, partly inside each program's figure):");
        println!(
            "  {:<44} {:>8} {:>10} {:>10} {:>8} {:>14}",
            "path", "path", "generator", "lb0 prog", "sink", "kernel (rest)"
        );
        for b in &self.breakdown {
            println!(
                "  {:<44} {:>8.1} {:>10.1} {:>10.1} {:>8.1} {:>14.1}",
                b.name,
                b.path_ns,
                b.generator_ns,
                b.lb_ns,
                b.sink_ns,
                b.kernel_ns()
            );
        }
    }
}

/// One path measured on one CPU and on several at once, rounds interleaved.
#[derive(Debug, Clone, Default)]
pub struct ScalingRow {
    pub name: String,
    /// Delivered Mpps on one CPU (the plan's), one sample per round.
    pub one: Samples,
    /// Delivered Mpps of all CPUs together, one sample per round.
    pub all: Samples,
}

/// The CPUs a multi-CPU run uses: the first two, if the machine has them.
/// Counted from the CPUs online, so that it is the same list in the generator's
/// pinned thread as in the thread that prints the table.
pub fn scaling_cpus() -> Vec<usize> {
    (0..crate::machine::online_cores().min(2)).collect()
}

/// Delivered Mpps of one run on each of `cpus` at once, `packets` each: the
/// kernel's per-packet time of each CPU's run (its generator, the balancer
/// and the sink all run on it), summed over CPUs, times the delivered share.
fn run_on_cpus(bench: &Bench<'_>, cpus: &[usize], packets: u32) -> (f64, Option<Counters>) {
    let counters_before = bench.dp.counters().expect("reading counters");
    let sink_before = bench.sink.settled_sink_counts();
    let barrier = std::sync::Barrier::new(cpus.len());
    let sent: Vec<Sent> = std::thread::scope(|s| {
        let handles: Vec<_> = cpus
            .iter()
            .map(|&cpu| {
                let barrier = &barrier;
                s.spawn(move || {
                    bench.net.gen.enter().expect("entering the generator namespace");
                    tula_dataplane::stay_on_cpu(cpu);
                    barrier.wait();
                    bench.generator.send(bench.net.gen_link.index, packets)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a generator thread")).collect()
    });
    let sink = bench.sink.settled_sink_counts().since(&sink_before);
    let counters = bench.dp.counters().expect("reading counters").since(&counters_before);
    let offered: f64 = sent
        .iter()
        .map(|s| 1e3 / s.kernel_per_packet.as_nanos() as f64)
        .sum();
    let total: u64 = sent.iter().map(|s| s.packets).sum();
    (offered * sink.frames as f64 / total as f64, Some(counters))
}

/// The floor, scenario 1 (established) and scenario 2 (SYN flood) on one CPU
/// and on [`scaling_cpus`] at once. Call from a thread in the gen namespace.
pub fn measure_scaling(bench: &mut Bench<'_>) -> Vec<ScalingRow> {
    let cpus = scaling_cpus();
    let plan = bench.plan;
    let scenarios = scenarios(plan);
    let cases: [(&str, Option<&Scenario>, OnLb); 3] = [
        (FLOOR_NAME, None, OnLb::Floor),
        (&scenarios[0].name, Some(&scenarios[0]), OnLb::Balancer),
        (&scenarios[1].name, Some(&scenarios[1]), OnLb::Balancer),
    ];
    let mut rows: Vec<ScalingRow> = cases
        .iter()
        .map(|(name, _, _)| ScalingRow {
            name: name.to_string(),
            ..ScalingRow::default()
        })
        .collect();
    for _ in 0..plan.rounds {
        for ((_, scenario, on_lb), row) in cases.iter().zip(rows.iter_mut()) {
            let traffic = scenario.map_or_else(|| reference_traffic(plan), |s| s.traffic.clone());
            bench.put_on_lb(*on_lb);
            for (which, on) in [(0, vec![plan.cpu]), (1, cpus.clone())] {
                bench.generator.configure(&traffic);
                if scenario.is_some_and(Scenario::needs_priming) {
                    bench.generator.send(bench.net.gen_link.index, traffic.flows);
                    bench.generator.configure(&traffic);
                }
                bench.generator.spread_over(&on, traffic.flows);
                let (mpps, counters) = run_on_cpus(bench, &on, plan.packets);
                if let (Some(s), Some(c)) = (scenario, counters) {
                    let seen = c.get(Counter::Tx);
                    let wanted = match s.path {
                        Path::NewFlow => c.get(Counter::LruMiss),
                        _ => c.get(Counter::LruHit),
                    };
                    assert_eq!(wanted, seen, "{} on CPUs {on:?}: took another path: {c:?}", s.name);
                }
                if which == 0 {
                    row.one.push(mpps);
                } else {
                    row.all.push(mpps);
                }
            }
        }
    }
    bench.put_on_lb(OnLb::Balancer);
    rows
}

/// Prints the scaling table.
pub fn print_scaling(rows: &[ScalingRow]) {
    let cpus = scaling_cpus();
    println!(
        "\nmore than one core: delivered Mpps on one CPU and on CPUs {cpus:?} at once (each CPU runs its own generator, balancer and sink), medians (min-max)"
    );
    println!("  {:<44} {:>19} {:>19} {:>8}", "path", "1 CPU", format!("{} CPUs", cpus.len()), "ratio");
    for row in rows {
        println!(
            "  {:<44} {:>19} {:>19} {:>8.2}",
            row.name,
            row.one.show(2),
            row.all.show(2),
            row.all.median() / row.one.median()
        );
    }
}

impl Report {
    /// The live-frames paths for dataplane.json: every scenario against the
    /// floor runs made just before it, as the table's ratio column.
    pub fn results(&self) -> Vec<crate::results::PathResult> {
        self.scenarios
            .iter()
            .zip(JSON_NAMES)
            .map(|(row, name)| crate::results::PathResult {
                name: name.to_string(),
                method: "live_frames",
                ns_per_packet: row.ns_per_packet.median(),
                floor_ns_per_packet: row.floor_ns.median(),
                mpps: row.delivered.median(),
                share_of_floor: Some(row.ratio.median()),
            })
            .collect()
    }
}

/// The scaling rows for dataplane.json: ns per packet is that of the CPUs together (1000 / Mpps).
pub fn scaling_results(rows: &[ScalingRow]) -> Vec<crate::results::PathResult> {
    let cpus = scaling_cpus().len();
    let Some((floor, paths)) = rows.split_first() else {
        return Vec::new();
    };
    paths
        .iter()
        .zip(SCALING_NAMES)
        .flat_map(|(row, name)| {
            [(1, &row.one, &floor.one), (cpus, &row.all, &floor.all)].map(|(n, path, floor)| {
                crate::results::PathResult {
                    name: format!("{name}, {n} cpu{}", if n == 1 { "" } else { "s" }),
                    method: "live_frames",
                    ns_per_packet: 1e3 / path.median(),
                    floor_ns_per_packet: 1e3 / floor.median(),
                    mpps: path.median(),
                    share_of_floor: None,
                }
            })
        })
        .collect()
}

/// Names of the scaling rows in dataplane.json, before ", 1 cpu" or ", N cpus".
pub(crate) const SCALING_NAMES: [&str; 2] = ["established, full table", "syn flood"];

/// Names of the five scenarios in dataplane.json (what a script searches for).
pub(crate) const JSON_NAMES: [&str; 5] = [
    "established, full table, L3 DSR",
    "syn flood (new flows), L3 DSR",
    "non-vip / vip mix 1:1",
    "established, L2 DSR",
    "1000 vips x 100 backends, 100k flows",
];
