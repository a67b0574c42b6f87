//! The `#[repr(C)]` mirrors in `abi.rs` match the structs the compiler laid
//! out in bpf/obj/balancer.o, as its BTF describes them: same size, same
//! members in the same order, each at the same offset with the same size.

use std::collections::HashMap;
use std::mem::{offset_of, size_of, size_of_val};

use object::{Object, ObjectSection};
use tula_dataplane::abi;

static BALANCER_OBJECT: &[u8] = include_bytes!("../../../bpf/obj/balancer.o");

/// One struct as BTF describes it: size, and (name, byte offset, byte size) per member.
#[derive(Debug, PartialEq, Eq)]
struct Layout {
    size: usize,
    members: Vec<(String, usize, usize)>,
}

/// Just enough of a BTF reader to lay out structs (format: Documentation/bpf/btf.rst).
struct Btf<'a> {
    strings: &'a [u8],
    /// (kind, name offset, size-or-type, kind-specific data) by type id; id 0 is void.
    types: Vec<(u32, u32, u32, &'a [u8])>,
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;

impl<'a> Btf<'a> {
    fn parse(section: &'a [u8]) -> Btf<'a> {
        assert_eq!(
            u16::from_le_bytes([section[0], section[1]]),
            0xeb9f,
            "BTF magic"
        );
        let hdr_len = u32_at(section, 4) as usize;
        let (type_off, type_len) = (u32_at(section, 8) as usize, u32_at(section, 12) as usize);
        let (str_off, str_len) = (u32_at(section, 16) as usize, u32_at(section, 20) as usize);
        let strings = &section[hdr_len + str_off..hdr_len + str_off + str_len];
        let mut data = &section[hdr_len + type_off..hdr_len + type_off + type_len];
        let mut types = vec![(0, 0, 0, &data[..0])];
        while !data.is_empty() {
            let (name, info, size_or_type) = (u32_at(data, 0), u32_at(data, 4), u32_at(data, 8));
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            let extra = match kind {
                1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
                3 => 12,                      // ARRAY
                4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
                6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
                _ => 0,
            };
            types.push((kind, name, size_or_type, &data[12..12 + extra]));
            data = &data[12 + extra..];
        }
        Btf { strings, types }
    }

    fn name(&self, offset: u32) -> String {
        let rest = &self.strings[offset as usize..];
        String::from_utf8_lossy(&rest[..rest.iter().position(|&b| b == 0).unwrap()]).into_owned()
    }

    fn size(&self, id: u32) -> usize {
        let (kind, _, size_or_type, extra) = self.types[id as usize];
        match kind {
            KIND_INT | KIND_STRUCT | KIND_UNION | KIND_ENUM => size_or_type as usize,
            KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST => self.size(size_or_type),
            KIND_ARRAY => u32_at(extra, 8) as usize * self.size(u32_at(extra, 0)),
            other => panic!("type {id} of kind {other} has no size here"),
        }
    }

    fn structs(&self) -> HashMap<String, Layout> {
        let mut structs = HashMap::new();
        for &(kind, name, size, extra) in &self.types {
            if kind != KIND_STRUCT || name == 0 {
                continue;
            }
            let members = extra
                .chunks_exact(12)
                .map(|m| {
                    let bit_offset = u32_at(m, 8);
                    assert_eq!(bit_offset % 8, 0, "no bitfields in the contract");
                    (
                        self.name(u32_at(m, 0)),
                        bit_offset as usize / 8,
                        self.size(u32_at(m, 4)),
                    )
                })
                .collect();
            structs.insert(
                self.name(name),
                Layout {
                    size: size as usize,
                    members,
                },
            );
        }
        structs
    }
}

/// The layout of a Rust mirror: `layout!(Type { field, ... })`.
macro_rules! layout {
    ($ty:ident { $($field:ident),* $(,)? }) => {{
        let value = abi::$ty::default();
        Layout {
            size: size_of::<abi::$ty>(),
            members: vec![$((stringify!($field).to_string(), offset_of!(abi::$ty, $field), size_of_val(&value.$field))),*],
        }
    }};
}

#[test]
fn rust_mirrors_match_the_object_btf() {
    let elf = object::File::parse(BALANCER_OBJECT).expect("parsing balancer.o");
    let section = elf
        .section_by_name(".BTF")
        .expect("balancer.o has BTF (built with -g)");
    let btf_structs = Btf::parse(section.data().unwrap()).structs();

    let mirrors = [
        (
            "vip_key",
            layout!(VipKey {
                addr,
                port,
                proto,
                pad
            }),
        ),
        (
            "vip_meta",
            layout!(VipMeta {
                id,
                flags,
                ring,
                pad
            }),
        ),
        (
            "backend",
            layout!(Backend {
                addr,
                flags,
                epoch,
                hop,
                generation
            }),
        ),
        (
            "flow",
            layout!(Flow {
                src,
                dst,
                sport,
                dport,
                proto,
                pad
            }),
        ),
        (
            "conn_entry",
            layout!(ConnEntry {
                flow,
                backend,
                check,
                stamp
            }),
        ),
        ("conn_bucket", layout!(ConnBucket { ways })),
        (
            "iface",
            layout!(Iface {
                tunnel_src,
                path_mtu,
                vlan_id,
                lower_ifindex
            }),
        ),
        ("traffic", layout!(Traffic { packets, bytes })),
        (
            "next_hop",
            layout!(NextHop {
                expires,
                ingress,
                tx_ifindex,
                tunnel_src,
                vlan_id,
                path_mtu,
                dmac,
                smac,
                route_mtu,
                ip_id,
                epoch,
                pad,
                addr
            }),
        ),
        ("vip_filter", layout!(VipFilter { words })),
        (
            "frag_key",
            layout!(FragKey {
                src,
                dst,
                id,
                proto,
                pad
            }),
        ),
        (
            "frag_dest",
            layout!(FragDest {
                backend,
                vip,
                vip_flags,
                flow_label
            }),
        ),
        ("vip_addr", layout!(VipAddr { flags })),
        (
            "settings",
            layout!(Settings {
                flags,
                backend_generation,
                icmp_interval_ns,
                icmp_burst_ns
            }),
        ),
        ("ring_chunk", layout!(RingChunk { slots })),
        ("layout", layout!(Layout { version, ring_size })),
        ("backend6", layout!(Backend6 { addr })),
        (
            "vip6_key",
            layout!(Vip6Key {
                addr,
                port,
                proto,
                pad
            }),
        ),
        ("vip6_addr_key", layout!(Vip6AddrKey { addr })),
        (
            "flow6",
            layout!(Flow6 {
                src,
                dst,
                sport,
                dport,
                proto,
                pad
            }),
        ),
        (
            "conn6_entry",
            layout!(Conn6Entry {
                flow,
                backend,
                check,
                stamp
            }),
        ),
        ("conn6_bucket", layout!(Conn6Bucket { ways })),
        ("iface6", layout!(Iface6 { tunnel_src })),
        (
            "path",
            layout!(Path { nh, pad }),
        ),
        (
            "cpu_backend",
            layout!(CpuBackend { backend, traffic }),
        ),
        (
            "path6",
            layout!(Path6 {
                backend_addr6,
                tunnel_src6
            }),
        ),
        (
            "frag6_key",
            layout!(Frag6Key {
                src,
                dst,
                id,
                proto,
                pad
            }),
        ),
        (
            "icmp_bucket",
            layout!(IcmpBucket {
                stamp_ns,
                credit_ns
            }),
        ),
    ];
    for (name, mirror) in mirrors {
        let btf = btf_structs
            .get(name)
            .unwrap_or_else(|| panic!("struct {name} is not in balancer.o's BTF"));
        assert_eq!(btf, &mirror, "struct {name}: BTF (left) vs abi.rs (right)");
    }
}

#[test]
fn the_btf_reader_sees_a_mismatch() {
    // Guards the test above against passing vacuously: a wrong mirror must differ.
    let elf = object::File::parse(BALANCER_OBJECT).unwrap();
    let btf_structs = Btf::parse(elf.section_by_name(".BTF").unwrap().data().unwrap()).structs();
    let swapped = layout!(Backend { flags, addr, epoch });
    assert_ne!(btf_structs["backend"], swapped);
    assert!(
        btf_structs.len() >= 14,
        "found only {:?}",
        btf_structs.keys()
    );
}
