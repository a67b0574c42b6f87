//! What the balancer counted (global counters, each VIP's and backend's
//! traffic) and the memory its maps hold.

use super::*;

impl Dataplane {
    // ----- counters -----

    /// Every global counter, summed over CPUs.
    pub fn counters(&self) -> Result<Counters> {
        let mut values = Vec::with_capacity(crate::Counter::ALL.len());
        for counter in crate::Counter::ALL {
            let slot = counter as u32;
            let per_cpu = self
                .counters
                .get(&slot, 0)
                .map_err(map_err("counters", format!("reading counter {counter}")))?;
            values.push(per_cpu.iter().sum::<u64>());
        }
        Ok(Counters::from_slots(|slot| values[slot as usize]))
    }

    /// Packets and bytes received for VIP id `id`.
    pub fn vip_traffic(&self, id: u32) -> Result<Traffic> {
        sum_traffic(&self.vip_stats, id)
            .map_err(map_err("vip_stats", format!("reading VIP id {id}")))
    }

    /// Packets and bytes sent to backend `id`.
    pub fn backend_traffic(&self, id: u32) -> Result<Traffic> {
        self.check_backend_id(id)?;
        let mut sum = Traffic::default();
        for cpu in 0..self.path_cpus {
            let copy = self
                .cpu_backends
                .get(&(cpu * self.max_backends + id), 0)
                .map_err(map_err("cpu_backends", format!("reading backend {id} on CPU {cpu}")))?;
            sum.packets += copy.traffic.packets;
            sum.bytes += copy.traffic.bytes;
        }
        Ok(sum)
    }

    /// Kernel memory each map takes, as the kernel accounts it (`memlock` in
    /// the map's /proc fdinfo), in bytes.
    pub fn map_memory(&self) -> Result<Vec<(&'static str, u64)>> {
        let fds: [(&'static str, &MapData); 26] = [
            ("vips", self.vips.map()),
            ("backends", self.backends.map()),
            ("cpu_backends", self.cpu_backends.map()),
            ("ring", self.ring.map()),
            ("layout", self.layout.map()),
            ("conns", self.conns.map()),
            ("syns", self.syns.map()),
            ("syns6", self.syns6.map()),
            ("ifaces", self.ifaces.map()),
            ("tx_ports", self.tx_ports.map()),
            ("paths", self.paths.map()),
            ("paths6", self.paths6.map()),
            ("vip_filter", self.vip_filter.map()),
            ("vip_stats", self.vip_stats.map()),
            ("counters", self.counters.map()),
            ("frags", self.frags.map()),
            ("vip_addrs", self.vip_addrs.map()),
            ("settings", self.settings.map()),
            ("icmp_buckets", self.icmp_buckets.map()),
            ("rr_cursors", self.rr_cursors.map()),
            ("vips6", self.vips6.map()),
            ("backends6", self.backends6.map()),
            ("conns6", self.conns6.map()),
            ("ifaces6", self.ifaces6.map()),
            ("frags6", self.frags6.map()),
            ("vip_addrs6", self.vip_addrs6.map()),
        ];
        fds.into_iter()
            .map(|(name, map)| {
                let fd = map.fd().as_fd().as_raw_fd();
                let path = format!("/proc/self/fdinfo/{fd}");
                let info = std::fs::read_to_string(&path)
                    .map_err(|e| map_err(name, format!("reading {path}"))(syscall_err("read", e)))?;
                let memlock = info
                    .lines()
                    .find_map(|line| line.strip_prefix("memlock:"))
                    .and_then(|value| value.trim().parse().ok())
                    .unwrap_or(0);
                Ok((name, memlock))
            })
            .collect()
    }

    /// Kernel memory of the `ring` map per ring slot it holds, in bytes.
    pub fn ring_bytes_per_slot(&self) -> Result<f64> {
        let memory = self.map_memory()?;
        let ring = memory
            .iter()
            .find(|(name, _)| *name == "ring")
            .map_or(0, |(_, bytes)| *bytes);
        let slots = f64::from(self.max_vips + abi::SPARE_RINGS) * f64::from(self.ring_size);
        Ok(ring as f64 / slots)
    }
}

fn sum_traffic(
    map: &PerCpuArray<MapData, abi::Traffic>,
    id: u32,
) -> Result<Traffic, aya::maps::MapError> {
    let per_cpu = map.get(&id, 0)?;
    Ok(per_cpu.iter().fold(Traffic::default(), |sum, t| Traffic {
        packets: sum.packets + t.packets,
        bytes: sum.bytes + t.bytes,
    }))
}
