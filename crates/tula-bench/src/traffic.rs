//! The live-frames traffic generator (`bpf/bench_gen.c`), the sink that
//! counts what arrives (`bpf/bench_sink.c`), the floor program that stands in
//! for the balancer in the baseline (`bpf/bench_floor.c`), and how long each
//! program runs per packet (the kernel's BPF run-time statistics).
//!
//! The generator is run with BPF_PROG_TEST_RUN and
//! BPF_F_TEST_XDP_LIVE_FRAMES: the kernel runs it `packets` times on frames
//! from a page pool, and every XDP_TX really leaves the interface named in the
//! context. The run happens on the calling thread's CPU, and so does the
//! receiving side of a veth (its NAPI poll is scheduled where the frames were
//! sent): a whole run -- generator, balancer, sink -- is one CPU's work.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use aya::maps::{Array, MapData, PerCpuArray};
use aya::programs::{ProgramInfo, Xdp, XdpMode};
use aya::{Ebpf, TestRun, TestRunAttrs, TestRunOptions};
use tula_dataplane::Protocol;

static GEN_OBJECT: &[u8] = include_bytes!("../../../bpf/obj/bench_gen.o");
static SINK_OBJECT: &[u8] = include_bytes!("../../../bpf/obj/bench_sink.o");
static FLOOR_OBJECT: &[u8] = include_bytes!("../../../bpf/obj/bench_floor.o");

/// Frame length the generator sends (64 bytes without FCS: Ethernet minimum plus a little).
pub const FRAME_LEN: usize = 64;
/// Entries of `gen_dsts` (GEN_MAX_DSTS in bench_gen.c).
pub const MAX_DSTS: usize = 4096;
/// New flows are numbered from here (bench_gen.c); established ones below.
pub const NEW_FLOW_BASE: u32 = 1 << 31;
/// Frames the kernel handles per batch of a live-frames test run (its maximum is 256).
pub const BATCH: u32 = 64;

/// Where packets go: TCP or UDP to `addr:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dst {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
}

/// What the generator sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficSpec {
    /// Established flows, cycled through: flow numbers `est_base ..= est_base + flows - 1`.
    pub flows: u32,
    pub est_base: u32,
    /// Out of every 16 packets, how many open a new flow (16 = a SYN flood).
    pub new_per_16: u32,
    /// Flow `f` goes to `dsts[f % dsts.len()]`.
    pub dsts: Vec<Dst>,
}

impl TrafficSpec {
    /// `flows` established flows spread over `dsts`.
    pub fn established(flows: u32, est_base: u32, dsts: Vec<Dst>) -> TrafficSpec {
        TrafficSpec {
            flows,
            est_base,
            new_per_16: 0,
            dsts,
        }
    }

    /// Every packet a new flow to one of `dsts`.
    pub fn syn_flood(dsts: Vec<Dst>) -> TrafficSpec {
        TrafficSpec {
            flows: 1,
            est_base: 0,
            new_per_16: 16,
            dsts,
        }
    }

    /// The 5-tuple of flow number `flow`, as bench_gen.c stamps it.
    pub fn flow(&self, flow: u32) -> tula_dataplane::Flow {
        let dst = self.dsts[flow as usize % self.dsts.len()];
        tula_dataplane::Flow {
            client: std::net::SocketAddrV4::new(client_addr(flow), client_port(flow)),
            vip: std::net::SocketAddrV4::new(dst.addr, dst.port),
            protocol: dst.protocol,
        }
    }
}

/// Source address of flow `flow`: 198.19.x.y from its low 16 bits.
pub fn client_addr(flow: u32) -> Ipv4Addr {
    Ipv4Addr::from(0xc613_0000 | (flow & 0xffff))
}

/// Source port of flow `flow`: 1024 + (flow >> 16) mod 64512.
pub fn client_port(flow: u32) -> u16 {
    (1024 + (flow >> 16) % 64512) as u16
}

/// `struct gen_config` in bench_gen.c.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct GenConfig {
    flows: u32,
    new_per_16: u32,
    dsts: u32,
    est_base: u32,
}

/// `struct gen_dst` in bench_gen.c.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct GenDst {
    addr: u32,
    port: u16,
    proto: u8,
    pad: u8,
}

/// `struct gen_template` in bench_gen.c.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct GenTemplate {
    bytes: [u8; FRAME_LEN],
}

// SAFETY: plain integers, laid out as the C structs, padding explicit.
unsafe impl aya::Pod for GenConfig {}
unsafe impl aya::Pod for GenDst {}
unsafe impl aya::Pod for GenTemplate {}

/// The generator program and its maps.
pub struct Generator {
    ebpf: Ebpf,
    /// The frame every run starts from (Ethernet, IPv4, TCP ACK, padding).
    template: [u8; FRAME_LEN],
}

/// What one generator run did.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub packets: u64,
    /// Wall time of the test-run system call: the generator and, on the same
    /// CPU, everything its frames caused (balancer, sink).
    pub wall: Duration,
    /// The kernel's own figure: time per packet inside its loop (setup,
    /// teardown and time given away to other tasks not counted).
    pub kernel_per_packet: Duration,
}

impl Sent {
    /// Packets per second offered, in millions.
    pub fn mpps(&self) -> f64 {
        self.packets as f64 / self.wall.as_secs_f64() / 1e6
    }
}

impl Generator {
    /// Loads bench_gen with frames from `src_mac` (the sending interface) to `dst_mac`.
    pub fn load(src_mac: [u8; 6], dst_mac: [u8; 6]) -> Generator {
        let mut ebpf = Ebpf::load(GEN_OBJECT).expect("loading bench_gen.o");
        let program: &mut Xdp = ebpf
            .program_mut("bench_gen")
            .expect("bench_gen.o has a program bench_gen")
            .try_into()
            .expect("bench_gen is an XDP program");
        program.load().expect("verifying bench_gen");
        let template = template_frame(src_mac, dst_mac);
        let mut generator = Generator { ebpf, template };
        let mut map: Array<&mut MapData, GenTemplate> = Array::try_from(
            generator
                .ebpf
                .map_mut("gen_template")
                .expect("map gen_template"),
        )
        .expect("gen_template is an array of struct gen_template");
        map.set(0, GenTemplate { bytes: template }, 0)
            .expect("writing gen_template");
        generator
    }

    /// Sets what the following runs send. Established flows start over from
    /// the first; the new-flow counter keeps growing, so new flows stay new.
    pub fn configure(&mut self, spec: &TrafficSpec) {
        assert!(
            !spec.dsts.is_empty() && spec.dsts.len() <= MAX_DSTS,
            "traffic needs 1 to {MAX_DSTS} destinations, got {}",
            spec.dsts.len()
        );
        assert!(
            spec.flows > 0 && spec.new_per_16 <= 16,
            "bad traffic spec {spec:?}"
        );
        assert!(
            u64::from(spec.est_base) + u64::from(spec.flows) <= u64::from(NEW_FLOW_BASE),
            "established flows {} + {} reach into the new-flow numbers",
            spec.est_base,
            spec.flows
        );
        let mut dsts: Array<&mut MapData, GenDst> =
            Array::try_from(self.ebpf.map_mut("gen_dsts").expect("map gen_dsts"))
                .expect("gen_dsts is an array of struct gen_dst");
        for (i, dst) in spec.dsts.iter().enumerate() {
            let raw = GenDst {
                addr: u32::from(dst.addr).to_be(),
                port: dst.port.to_be(),
                proto: dst.protocol.number(),
                pad: 0,
            };
            dsts.set(i as u32, raw, 0).expect("writing gen_dsts");
        }
        let mut config: Array<&mut MapData, GenConfig> =
            Array::try_from(self.ebpf.map_mut("gen_config").expect("map gen_config"))
                .expect("gen_config is an array of struct gen_config");
        let raw = GenConfig {
            flows: spec.flows,
            new_per_16: spec.new_per_16,
            dsts: spec.dsts.len() as u32,
            est_base: spec.est_base,
        };
        config.set(0, raw, 0).expect("writing gen_config");
        // Established flows start over; the packet and new-flow counts keep going.
        let mut state: PerCpuArray<&mut MapData, [u64; 3]> =
            PerCpuArray::try_from(self.ebpf.map_mut("gen_state").expect("map gen_state"))
                .expect("gen_state is a per-CPU array of struct gen_state");
        let values: Vec<[u64; 3]> = state
            .get(&0, 0)
            .expect("reading gen_state")
            .iter()
            .map(|&[packets, _, new]| [packets, 0, new])
            .collect();
        let values = aya::maps::PerCpuValues::try_from(values).expect("one value per CPU");
        state.set(0, values, 0).expect("writing gen_state");
    }

    /// Gives each of `cpus` its own share of the traffic for runs made on
    /// several CPUs at once: CPU number i of the list starts its established
    /// flows i/n of the way in, so that no two CPUs send the same flow at the
    /// same time (new flows carry their CPU's number: bpf/bench_gen.c).
    pub fn spread_over(&mut self, cpus: &[usize], flows: u32) {
        let mut state: PerCpuArray<&mut MapData, [u64; 3]> =
            PerCpuArray::try_from(self.ebpf.map_mut("gen_state").expect("map gen_state"))
                .expect("gen_state is a per-CPU array of struct gen_state");
        let mut values: Vec<[u64; 3]> = state.get(&0, 0).expect("reading gen_state").to_vec();
        for (i, &cpu) in cpus.iter().enumerate() {
            // New flows need nothing: the generator numbers each CPU's apart.
            if let Some([_, est, _]) = values.get_mut(cpu) {
                *est = u64::from(flows) * i as u64 / cpus.len() as u64;
            }
        }
        let values = aya::maps::PerCpuValues::try_from(values).expect("one value per CPU");
        state.set(0, values, 0).expect("writing gen_state");
    }

    /// Sends `packets` frames out of interface `ifindex`, which must be in the
    /// calling thread's network namespace. Returns the wall time of the run.
    pub fn send(&self, ifindex: u32, packets: u32) -> Sent {
        let ctx = tula_dataplane::xdp_md(FRAME_LEN, ifindex);
        let options = TestRunOptions {
            data_in: Some(&self.template),
            ctx_in: Some(&ctx),
            repeat: packets,
            attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
            ..TestRunOptions::default()
        };
        let start = Instant::now();
        let result = self.program().test_run(options).unwrap_or_else(|e| {
            panic!("live-frames test run of bench_gen on ifindex {ifindex}: {e}")
        });
        let wall = start.elapsed();
        assert_eq!(
            result.return_value, 0,
            "live-frames test run of bench_gen: unexpected return value"
        );
        Sent {
            packets: u64::from(packets),
            wall,
            kernel_per_packet: result.duration,
        }
    }

    fn program(&self) -> &Xdp {
        self.ebpf
            .program("bench_gen")
            .expect("bench_gen")
            .try_into()
            .expect("an XDP program")
    }

    pub fn info(&self) -> ProgramInfo {
        self.program()
            .info()
            .expect("reading bench_gen's program info")
    }
}

/// Ethernet + IPv4 + TCP (ACK) + zero padding, FRAME_LEN bytes. The generator
/// rewrites addresses, ports, flags and the IPv4 checksum of every packet.
fn template_frame(src_mac: [u8; 6], dst_mac: [u8; 6]) -> [u8; FRAME_LEN] {
    let mut frame = [0u8; FRAME_LEN];
    frame[0..6].copy_from_slice(&dst_mac);
    frame[6..12].copy_from_slice(&src_mac);
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (FRAME_LEN - 14) as u16;
    let ip = &mut frame[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64; // TTL
    ip[9] = 6; // TCP
    let tcp = &mut frame[34..54];
    tcp[12] = 5 << 4; // data offset: 20 bytes
    tcp[13] = 0x10; // ACK
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    frame
}

/// Packets the sink saw, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCounts {
    pub frames: u64,
    /// IPIP frames: the balancer's L3 DSR output.
    pub ipip: u64,
    pub other: u64,
    pub bytes: u64,
}

impl SinkCounts {
    pub fn since(&self, earlier: &SinkCounts) -> SinkCounts {
        SinkCounts {
            frames: self.frames - earlier.frames,
            ipip: self.ipip - earlier.ipip,
            other: self.other - earlier.other,
            bytes: self.bytes - earlier.bytes,
        }
    }
}

/// An XDP program from one of the bench objects, attached to at most one interface.
pub struct XdpProgram {
    ebpf: Ebpf,
    name: &'static str,
    attached: Option<aya::programs::xdp::XdpLinkId>,
}

impl XdpProgram {
    fn load(object: &[u8], name: &'static str) -> XdpProgram {
        let mut ebpf = Ebpf::load(object).unwrap_or_else(|e| panic!("loading {name}.o: {e}"));
        let program: &mut Xdp = ebpf
            .program_mut(name)
            .unwrap_or_else(|| panic!("{name}.o has no program {name}"))
            .try_into()
            .unwrap_or_else(|e| panic!("{name} is not an XDP program: {e}"));
        program
            .load()
            .unwrap_or_else(|e| panic!("verifying {name}: {e}"));
        XdpProgram {
            ebpf,
            name,
            attached: None,
        }
    }

    /// The sink: counts and drops.
    pub fn sink() -> XdpProgram {
        XdpProgram::load(SINK_OBJECT, "bench_sink")
    }

    /// The floor: swaps MACs, XDP_TX.
    pub fn floor() -> XdpProgram {
        XdpProgram::load(FLOOR_OBJECT, "bench_floor")
    }

    fn program_mut(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(self.name)
            .expect("loaded above")
            .try_into()
            .expect("an XDP program")
    }

    /// Attaches natively to `ifname` in the calling thread's namespace.
    pub fn attach(&mut self, ifname: &str) {
        assert!(self.attached.is_none(), "{} is attached already", self.name);
        let name = self.name;
        let id = self
            .program_mut()
            .attach(ifname, XdpMode::Driver)
            .unwrap_or_else(|e| panic!("attaching {name} to {ifname} (native): {e}"));
        self.attached = Some(id);
    }

    pub fn detach(&mut self) {
        if let Some(id) = self.attached.take() {
            let name = self.name;
            self.program_mut()
                .detach(id)
                .unwrap_or_else(|e| panic!("detaching {name}: {e}"));
        }
    }

    pub fn info(&self) -> ProgramInfo {
        let program: &Xdp = self
            .ebpf
            .program(self.name)
            .expect("loaded above")
            .try_into()
            .expect("an XDP program");
        program
            .info()
            .unwrap_or_else(|e| panic!("reading {}'s program info: {e}", self.name))
    }

    /// The sink's counters (only for [`XdpProgram::sink`]).
    pub fn sink_counts(&self) -> SinkCounts {
        let map: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map("sink_counts").expect("map sink_counts"))
                .expect("sink_counts is a per-CPU array of u64");
        let read =
            |slot: u32| -> u64 { map.get(&slot, 0).expect("reading sink_counts").iter().sum() };
        SinkCounts {
            frames: read(0),
            ipip: read(1),
            other: read(2),
            bytes: read(3),
        }
    }

    /// Waits until the sink's frame count stops moving (frames still queued
    /// in a veth ring when the generator returned), at most 200 ms.
    pub fn settled_sink_counts(&self) -> SinkCounts {
        let deadline = Instant::now() + Duration::from_millis(200);
        let mut last = self.sink_counts();
        loop {
            std::thread::sleep(Duration::from_millis(2));
            let now = self.sink_counts();
            if now == last || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    }
}

/// Run time and run count of a program (BPF run-time statistics).
#[derive(Debug, Clone, Copy, Default)]
pub struct RunStats {
    pub time: Duration,
    pub count: u64,
}

impl RunStats {
    pub fn of(info: &ProgramInfo) -> RunStats {
        RunStats {
            time: info.run_time(),
            count: info.run_count(),
        }
    }

    pub fn since(&self, earlier: &RunStats) -> RunStats {
        RunStats {
            time: self.time.saturating_sub(earlier.time),
            count: self.count - earlier.count,
        }
    }

    /// Nanoseconds per run.
    pub fn ns_per_run(&self) -> f64 {
        self.time.as_nanos() as f64 / self.count.max(1) as f64
    }
}

/// The program attached in native XDP mode to `ifname` (in the calling
/// thread's namespace), found through its id in the link's netlink attributes.
pub fn attached_program(ifname: &str) -> ProgramInfo {
    let index = tula_net::link(ifname)
        .unwrap_or_else(|e| panic!("looking up {ifname}: {e}"))
        .index;
    let id =
        xdp_program_id(index).unwrap_or_else(|| panic!("no XDP program is attached to {ifname}"));
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|info| info.id() == id)
        .unwrap_or_else(|| panic!("program {id} attached to {ifname} is not loaded"))
}

fn xdp_program_id(index: u32) -> Option<u32> {
    use futures::TryStreamExt;
    use netlink_packet_route::link::{LinkAttribute, LinkXdp};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("a netlink runtime");
    runtime.block_on(async {
        let (connection, handle, _) = rtnetlink::new_connection().expect("a netlink socket");
        let task = tokio::spawn(connection);
        let message = handle
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_next()
            .await
            .expect("reading the link's attributes");
        task.abort();
        message?.attributes.into_iter().find_map(|a| match a {
            LinkAttribute::Xdp(xdp) => xdp.into_iter().find_map(|x| match x {
                LinkXdp::ProgId(id) | LinkXdp::DrvProgId(id) if id != 0 => Some(id),
                _ => None,
            }),
            _ => None,
        })
    })
}

