//! What the balancer is told: the interfaces packets leave by and their next
//! hops, VIPs and their rings, backends, and the MTU and ICMP settings; each
//! a typed write of its maps, and the reads that give it back.

use super::*;

impl Dataplane {
    // ----- interfaces -----

    /// Registers `ifname` as an interface packets may leave by: its tunnel
    /// source, MTU and VLAN go into `ifaces`, and the device frames really
    /// leave by into `tx_ports`. Every interface a route to a backend can use
    /// must be registered (attached ones are, by [`Dataplane::attach`]).
    pub fn set_interface(&mut self, ifname: &str, spec: &InterfaceSpec) -> Result<()> {
        let net_error = |ifname: &str| {
            let ifname = ifname.to_string();
            move |source| DataplaneError::Interface { ifname, source }
        };
        let link = tula_net::link(ifname).map_err(net_error(ifname))?;
        let tunnel_src = match spec.tunnel_src {
            Some(addr) => Some(addr),
            None => tula_net::primary_ipv4(ifname).map_err(net_error(ifname))?,
        };
        if tunnel_src.is_none() {
            warn!(ifname, "no IPv4 address and no tunnel source given: L3 DSR packets routed out of it are dropped (no_iface)");
        }
        let tunnel_src6 = match spec.tunnel_src6 {
            Some(addr) => Some(addr),
            None => tula_net::primary_ipv6(ifname).map_err(net_error(ifname))?,
        };
        let (vlan_id, lower_ifindex) = match &spec.vlan {
            None => (0, link.index),
            Some(vlan) => (
                vlan.id,
                tula_net::link(&vlan.lower)
                    .map_err(net_error(&vlan.lower))?
                    .index,
            ),
        };
        let iface = abi::Iface {
            tunnel_src: tunnel_src.map(abi::addr_to_raw).unwrap_or(0),
            path_mtu: spec.path_mtu.unwrap_or(0),
            vlan_id,
            lower_ifindex,
        };
        self.tx_ports
            .insert(lower_ifindex, lower_ifindex, None, 0)
            .map_err(|e| DataplaneError::Link {
                ifname: ifname.into(),
                what: "adding it to tx_ports",
                source: Box::new(e),
            })?;
        self.ifaces.insert(link.index, iface, 0).map_err(map_err(
            "ifaces",
            format!("setting interface {ifname} (index {})", link.index),
        ))?;
        match tunnel_src6 {
            Some(addr) => {
                let iface6 = abi::Iface6 {
                    tunnel_src: abi::addr6_to_raw(addr),
                };
                self.ifaces6.insert(link.index, iface6, 0).map_err(map_err(
                    "ifaces6",
                    format!("setting interface {ifname} (index {})", link.index),
                ))?;
            }
            None => ignore_missing(self.ifaces6.remove(&link.index)).map_err(map_err(
                "ifaces6",
                format!("removing interface {ifname} (index {})", link.index),
            ))?,
        }
        self.flush_next_hops()
    }

    /// Unregisters `ifname` as an egress interface.
    pub fn remove_interface(&mut self, ifname: &str) -> Result<()> {
        let link = tula_net::link(ifname).map_err(|source| DataplaneError::Interface {
            ifname: ifname.into(),
            source,
        })?;
        ignore_missing(self.ifaces.remove(&link.index))
            .map_err(map_err("ifaces", format!("removing interface {ifname}")))?;
        ignore_missing(self.ifaces6.remove(&link.index))
            .map_err(map_err("ifaces6", format!("removing interface {ifname}")))?;
        ignore_missing(self.tx_ports.remove(link.index))
            .map_err(map_err("tx_ports", format!("removing interface {ifname}")))?;
        self.flush_next_hops()
    }

    /// Forgets every cached next hop, so the next packet to each backend asks
    /// bpf_fib_lookup again: every hop moves to a new epoch. Entries also
    /// expire by themselves after 100 ms (`NEXT_HOP_TTL_JIFFIES`); interface
    /// changes flush them.
    pub fn flush_next_hops(&mut self) -> Result<()> {
        let mut backends = read_array(&self.backends, "backends", 0, self.max_backends)?;
        let epoch = self.next_epoch();
        for backend in backends.iter_mut().filter(|b| **b != abi::Backend::default()) {
            backend.epoch = epoch;
        }
        self.hops.set_epoch(epoch);
        rings::write_batch(self.backends.map().fd().as_fd(), 0, &backends)
            .map_err(|e| map_err("backends", "moving every backend to a new epoch")(batch_error(e)))?;
        self.publish_backends()
    }

    /// The epoch the next new hop (or flush) gets. It wraps after 65,536; a
    /// path is refilled at least every 100 ms whatever its epoch.
    fn next_epoch(&mut self) -> u16 {
        self.epoch = self.epoch.wrapping_add(1);
        self.epoch
    }

    /// Moves the settings' backend generation on, so every CPU copies the
    /// `backends` entries anew before it uses them (see `backend_of()` in
    /// balancer.c). Called after every write to `backends`.
    pub(crate) fn publish_backends(&mut self) -> Result<()> {
        // Never 0, which makes every packet copy its backend.
        let generation = self.raw_settings.backend_generation.wrapping_add(1).max(1);
        let raw = abi::Settings {
            backend_generation: generation,
            ..self.raw_settings
        };
        self.settings
            .set(0, raw, 0)
            .map_err(map_err("settings", format!("publishing backend generation {generation}")))?;
        self.raw_settings = raw;
        Ok(())
    }

    /// Each backend's address (None for an id never set), as `backends` and
    /// `backends6` hold them.
    pub(crate) fn backend_addrs(&self, backends: &[abi::Backend]) -> Result<Vec<Option<IpAddr>>> {
        let backends6 = if backends.iter().any(|b| b.flags & abi::BACKEND_F_IPV6 != 0) {
            read_array(&self.backends6, "backends6", 0, self.max_backends)?
        } else {
            Vec::new()
        };
        Ok(backends
            .iter()
            .enumerate()
            .map(|(id, b)| backend_addr(b, backends6.get(id)))
            .collect())
    }

    // ----- VIPs and backends -----

    /// Adds or updates a VIP and replaces its ring. `ring` holds `ring_size`
    /// backend ids (`tula_maglev::Ring::slots()` for the hashing schedulers,
    /// [`round_robin_ring`](crate::round_robin_ring) for the round-robin
    /// ones), or is empty for a VIP with no backend. The new ring is written into a free ring first and the
    /// VIP switched to it in one map update, so packets never see a mix.
    pub fn set_vip(&mut self, key: &VipKey, spec: &VipSpec, ring: &[u32]) -> Result<()> {
        if spec.id >= self.max_vips {
            return Err(DataplaneError::VipIdOutOfRange {
                vip: key.to_string(),
                id: spec.id,
                max_vips: self.max_vips,
            });
        }
        let empty;
        let ring = if ring.is_empty() {
            empty = vec![EMPTY_SLOT; self.ring_size as usize];
            &empty[..]
        } else {
            ring
        };
        if ring.len() != self.ring_size as usize {
            return Err(DataplaneError::RingLength {
                vip: key.to_string(),
                len: ring.len(),
                ring_size: self.ring_size,
            });
        }
        if let Some((slot, &id)) = ring
            .iter()
            .enumerate()
            .find(|(_, &id)| id >= self.max_backends && id != EMPTY_SLOT)
        {
            return Err(DataplaneError::RingBackendOutOfRange {
                vip: key.to_string(),
                slot,
                id,
                max_backends: self.max_backends,
            });
        }

        let raw_key = key.to_abi();
        let old = self.vip_meta(key)?;
        let new_ring = self
            .free_rings
            .take()
            .ok_or_else(|| DataplaneError::NoFreeRing {
                vip: key.to_string(),
                rings: self.max_vips + abi::SPARE_RINGS,
            })?;
        let write = rings::write_mapped(self.ring.map().fd(), new_ring, self.ring_size, ring);
        if let Err(e) = write {
            self.free_rings.release(new_ring);
            return Err(map_err("ring", format!("writing ring {new_ring} for VIP {key}"))(syscall_err("mmap", e)));
        }
        let meta = abi::VipMeta {
            id: spec.id,
            flags: spec.flags(),
            ring: new_ring,
            pad: 0,
        };
        // The address must pass the filter before its VIP entry can be found.
        if old.is_none() {
            let mut filter = self.read_vip_filter()?;
            if !filter.contains(filter_addr(key.addr)) {
                filter.insert(filter_addr(key.addr));
                self.write_vip_filter(&filter)?;
            }
        }
        let inserted = match raw_key {
            RawVipKey::V4(raw) => self.vips.insert(raw, meta, 0).map_err(map_err("vips", format!("setting VIP {key}"))),
            RawVipKey::V6(raw) => self.vips6.insert(raw, meta, 0).map_err(map_err("vips6", format!("setting VIP {key}"))),
        };
        if let Err(e) = inserted {
            self.free_rings.release(new_ring);
            return Err(e);
        }
        if let Some(old) = old {
            self.free_rings.release(old.ring);
        }
        let echo_before = old.map(|meta| VipSpec::from_abi(&meta).icmp_echo);
        if echo_before != Some(spec.icmp_echo) {
            self.sync_vip_addr(key.addr, spec.icmp_echo)?;
        }
        Ok(())
    }

    /// The `vips` (or `vips6`) entry of `key`, if it has one.
    fn vip_meta(&self, key: &VipKey) -> Result<Option<abi::VipMeta>> {
        let found = match key.to_abi() {
            RawVipKey::V4(raw) => self.vips.get(&raw, 0),
            RawVipKey::V6(raw) => self.vips6.get(&raw, 0),
        };
        match found {
            Ok(meta) => Ok(Some(meta)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err("vips", format!("reading VIP {key}"))(e)),
        }
    }

    /// Removes a VIP; its packets are passed to the kernel from now on.
    pub fn remove_vip(&mut self, key: &VipKey) -> Result<()> {
        let Some(meta) = self.vip_meta(key)? else {
            return Err(DataplaneError::NoSuchVip {
                vip: key.to_string(),
            });
        };
        match key.to_abi() {
            RawVipKey::V4(raw) => self.vips.remove(&raw),
            RawVipKey::V6(raw) => self.vips6.remove(&raw),
        }
        .map_err(map_err("vips", format!("removing VIP {key}")))?;
        self.free_rings.release(meta.ring);
        // Rebuilt from the VIPs left; a bit shared with another address stays set.
        let mut filter = abi::VipFilter::default();
        for (key, _) in self.vips()? {
            filter.insert(filter_addr(key.addr));
        }
        self.write_vip_filter(&filter)?;
        self.sync_vip_addr(key.addr, false)
    }

    /// Brings `vip_addrs[addr]` in line with the VIPs on `addr`: echo requests
    /// are answered while any of them has `icmp_echo`. `echo` is what the VIP
    /// just set says; when it is on, no other VIP needs reading.
    fn sync_vip_addr(&mut self, addr: IpAddr, echo: bool) -> Result<()> {
        // Nothing to turn off: every VIP that turns echo on sets it, so no VIP needs reading
        // (1,000 new VIPs read 500,000 entries otherwise).
        if !echo && !self.answers_echo(addr)? {
            return Ok(());
        }
        let echo = echo
            || self
                .vips()?
                .iter()
                .any(|(key, spec)| key.addr == addr && spec.icmp_echo);
        let value = abi::VipAddr {
            flags: abi::VIP_ADDR_F_ECHO,
        };
        let set = match (addr, echo) {
            (IpAddr::V4(v4), true) => self.vip_addrs.insert(abi::addr_to_raw(v4), value, 0),
            (IpAddr::V4(v4), false) => ignore_missing(self.vip_addrs.remove(&abi::addr_to_raw(v4))),
            (IpAddr::V6(v6), true) => self.vip_addrs6.insert(addr6_key(v6), value, 0),
            (IpAddr::V6(v6), false) => ignore_missing(self.vip_addrs6.remove(&addr6_key(v6))),
        };
        set.map_err(map_err("vip_addrs", format!("setting address {addr} (echo {echo})")))
    }

    /// Whether echo requests to `addr` are answered in XDP.
    pub fn answers_echo(&self, addr: IpAddr) -> Result<bool> {
        let found = match addr {
            IpAddr::V4(v4) => self.vip_addrs.get(&abi::addr_to_raw(v4), 0),
            IpAddr::V6(v6) => self.vip_addrs6.get(&addr6_key(v6), 0),
        };
        match found {
            Ok(value) => Ok(value.flags & abi::VIP_ADDR_F_ECHO != 0),
            Err(aya::maps::MapError::KeyNotFound) => Ok(false),
            Err(e) => Err(map_err("vip_addrs", format!("reading address {addr}"))(e)),
        }
    }

    // ----- MTU and ICMP -----

    /// Sets how too-big DF packets are answered (takes effect at once).
    pub fn set_icmp(&mut self, icmp: &IcmpSettings) -> Result<()> {
        let raw = abi::Settings {
            backend_generation: self.raw_settings.backend_generation,
            ..icmp.to_abi()
        };
        self.settings
            .set(0, raw, 0)
            .map_err(map_err("settings", "writing the ICMP settings"))?;
        self.raw_settings = raw;
        Ok(())
    }

    /// How too-big DF packets are answered now.
    pub fn icmp(&self) -> Result<IcmpSettings> {
        let raw = self
            .settings
            .get(&0, 0)
            .map_err(map_err("settings", "reading the ICMP settings"))?;
        Ok(IcmpSettings::from_abi(&raw))
    }

    /// The path MTU toward `backend` as the balancer sees it (what an
    /// encapsulated packet must fit; the tunnel MTU is 20 less): the MTU of
    /// the interface the route to it leaves by, lowered by that interface's
    /// `path_mtu`. `None` when no route leaves by a registered interface.
    /// (The balancer uses the route's MTU, which a route's own `mtu` may lower.)
    pub fn path_mtu(&self, backend: Ipv4Addr) -> Result<Option<u16>> {
        let Ok(route) = tula_net::route_get(backend) else {
            return Ok(None);
        };
        let iface = match self.ifaces.get(&route.index, 0) {
            Ok(iface) => iface,
            Err(aya::maps::MapError::KeyNotFound) => return Ok(None),
            Err(e) => {
                return Err(map_err(
                    "ifaces",
                    format!("reading interface {}", route.dev),
                )(e))
            }
        };
        let link = tula_net::link(&route.dev).map_err(|source| DataplaneError::Interface {
            ifname: route.dev.clone(),
            source,
        })?;
        let route_mtu = link.mtu.min(u16::MAX.into()) as u16;
        Ok(Some(match iface.path_mtu {
            0 => route_mtu,
            lower => lower.min(route_mtu),
        }))
    }

    fn read_vip_filter(&self) -> Result<abi::VipFilter> {
        self.vip_filter
            .get(&0, 0)
            .map_err(map_err("vip_filter", "reading it"))
    }

    fn write_vip_filter(&mut self, filter: &abi::VipFilter) -> Result<()> {
        self.vip_filter
            .set(0, filter, 0)
            .map_err(map_err("vip_filter", "writing it"))
    }

    /// The ring a VIP uses now: its index in the `ring` map and its slots.
    pub fn vip_ring(&self, key: &VipKey) -> Result<Option<(u32, Vec<u32>)>> {
        let Some(meta) = self.vip_meta(key)? else {
            return Ok(None);
        };
        let chunks = abi::ring_chunks(self.ring_size);
        let slots = rings::read_batch(self.ring.map().fd(), meta.ring * chunks, chunks)
            .map(|chunks| rings::from_chunks(&chunks, self.ring_size))
            .map_err(|e| {
                map_err("ring", format!("reading ring {} of VIP {key}", meta.ring))(syscall_err("BPF_MAP_LOOKUP_BATCH", e))
            })?;
        Ok(Some((meta.ring, slots)))
    }

    /// Every VIP with its spec.
    pub fn vips(&self) -> Result<Vec<(VipKey, VipSpec)>> {
        let mut vips = Vec::new();
        for entry in self.vips.iter() {
            let (raw_key, meta) = entry.map_err(map_err("vips", "listing VIPs"))?;
            if let Some(key) = VipKey::from_abi(&raw_key) {
                vips.push((key, VipSpec::from_abi(&meta)));
            }
        }
        for entry in self.vips6.iter() {
            let (raw_key, meta) = entry.map_err(map_err("vips6", "listing VIPs"))?;
            if let Some(key) = VipKey::from_abi6(&raw_key) {
                vips.push((key, VipSpec::from_abi(&meta)));
            }
        }
        vips.sort_by_key(|(key, _)| *key);
        Ok(vips)
    }

    /// Sets backend `id`'s address and whether it is alive.
    pub fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<()> {
        self.set_backends(&[(id, *backend)])
    }

    /// Sets many backends at once: their entries in one system call (plus one
    /// per IPv6 address), then one move of the backend generation, where
    /// [`set_backend`](Self::set_backend) for each would take two calls each.
    /// Every id is checked before anything is written.
    pub fn set_backends(&mut self, backends: &[(u32, Backend)]) -> Result<()> {
        for (id, _) in backends {
            self.check_backend_id(*id)?;
        }
        // A batch whose new addresses outnumber the free hops is refused
        // before anything, in memory or in the maps, is changed.
        let joins = backends.iter().map(|(id, backend)| (*id, backend.addr));
        if let Err((id, addr)) = self.hops.check_joins(joins) {
            return Err(DataplaneError::TooManyBackendAddresses {
                id,
                addr,
                max_backend_addresses: self.max_hops,
            });
        }
        // The entries first, in memory.
        let mut ids = Vec::with_capacity(backends.len());
        let mut raws = Vec::with_capacity(backends.len());
        for (id, backend) in backends {
            let epoch = &mut self.epoch;
            let hop = self.hops.join(*id, backend.addr, || {
                *epoch = epoch.wrapping_add(1);
                *epoch
            });
            let hop = match hop {
                Ok(hop) => hop,
                Err(full) => {
                    // Not reached (check_joins found room); if it were, the map still holds every hop.
                    self.read_hops()?;
                    return Err(DataplaneError::TooManyBackendAddresses {
                        id: *id,
                        addr: backend.addr,
                        max_backend_addresses: full.limit,
                    });
                }
            };
            let alive = if backend.alive {
                abi::BACKEND_F_ALIVE
            } else {
                0
            };
            let (addr, flags) = match backend.addr {
                IpAddr::V4(v4) => (abi::addr_to_raw(v4), alive),
                IpAddr::V6(v6) => (crate::flow::addr6_tag(v6), alive | abi::BACKEND_F_IPV6),
            };
            ids.push(*id);
            raws.push(abi::Backend {
                addr,
                flags,
                epoch: hop.epoch,
                hop: hop.index,
                generation: 0,
            });
        }
        // Then the IPv6 addresses: the balancer reads one once the flag says IPv6.
        // Each one's predecessor is kept, for the entries a failure leaves unwritten.
        let mut replaced6 = Vec::new();
        for (index, (id, backend)) in backends.iter().enumerate() {
            if let IpAddr::V6(v6) = backend.addr {
                let raw6 = abi::Backend6 {
                    addr: abi::addr6_to_raw(v6),
                };
                let written = self.backends6.get(id, 0).and_then(|old| {
                    self.backends6.set(*id, raw6, 0)?;
                    replaced6.push((index, old));
                    Ok(())
                });
                if let Err(e) = written {
                    self.restore_backends6(&replaced6, backends, &[]);
                    self.read_hops()?;
                    return Err(map_err("backends6", format!("setting backend {id} ({v6})"))(e));
                }
            }
        }
        if let Err(e) = rings::write_batch_at(self.backends.map().fd().as_fd(), &ids, &raws) {
            // Some may be written: the others keep their old addresses, and the
            // hops are numbered again from what the map holds.
            self.restore_backends6(&replaced6, backends, &raws);
            self.assign_hops()?;
            let what = match backends {
                [(id, backend)] => format!("setting backend {id} ({})", backend.addr),
                _ => format!("setting {} backends", backends.len()),
            };
            return Err(map_err("backends", what)(batch_error(e)));
        }
        self.publish_backends()
    }

    /// After a failed [`set_backends`](Self::set_backends): gives back the old
    /// IPv6 address of each backend in `replaced6` (index into `backends`, old
    /// address) whose entry does not hold its new value `raws[index]` (none
    /// written when `raws` is empty), so a refused write changes no backend.
    fn restore_backends6(
        &mut self,
        replaced6: &[(usize, abi::Backend6)],
        backends: &[(u32, Backend)],
        raws: &[abi::Backend],
    ) {
        for &(index, old) in replaced6 {
            let id = backends[index].0;
            if raws.get(index).is_some_and(|raw| self.backends.get(&id, 0).ok() == Some(*raw)) {
                continue;
            }
            if let Err(e) = self.backends6.set(id, old, 0) {
                warn!("backend {id}: its old IPv6 address could not be written back after a failed write: {e}");
            }
        }
    }

    /// Clears backend `id`: flows stuck to it re-hash, ring slots naming it drop.
    pub fn remove_backend(&mut self, id: u32) -> Result<()> {
        self.check_backend_id(id)?;
        self.backends
            .set(id, abi::Backend::default(), 0)
            .map_err(map_err("backends", format!("removing backend {id}")))?;
        self.hops.leave(id);
        self.publish_backends()
    }

    /// Backend `id`, or `None` if it was never set (or removed).
    pub fn backend(&self, id: u32) -> Result<Option<Backend>> {
        self.check_backend_id(id)?;
        let raw = self
            .backends
            .get(&id, 0)
            .map_err(map_err("backends", format!("reading backend {id}")))?;
        if raw == abi::Backend::default() {
            return Ok(None);
        }
        let addr = if raw.flags & abi::BACKEND_F_IPV6 != 0 {
            let raw6 = self
                .backends6
                .get(&id, 0)
                .map_err(map_err("backends6", format!("reading backend {id}")))?;
            abi::addr6_from_raw(raw6.addr).into()
        } else {
            abi::addr_from_raw(raw.addr).into()
        };
        Ok(Some(Backend {
            addr,
            alive: raw.flags & abi::BACKEND_F_ALIVE != 0,
        }))
    }

    pub(super) fn check_backend_id(&self, id: u32) -> Result<()> {
        if id >= self.max_backends {
            return Err(DataplaneError::BackendIdOutOfRange {
                id,
                max_backends: self.max_backends,
            });
        }
        Ok(())
    }
}

/// The IPv4 address whose VIP-filter bit `addr` sets.
fn filter_addr(addr: IpAddr) -> std::net::Ipv4Addr {
    match addr {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => abi::VipFilter::fold6(v6),
    }
}

fn addr6_key(addr: std::net::Ipv6Addr) -> abi::Vip6AddrKey {
    abi::Vip6AddrKey {
        addr: abi::addr6_to_raw(addr),
    }
}
