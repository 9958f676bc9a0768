//! Every map of the dataplane. Key and value types live in `lvs-common`; userspace pins all of
//! them (names in `lvs_common::map_names`) so forwarding survives a daemon restart.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray},
};
use lvs_common::{
    classify::{ClassRuleSet, CTL_WORDS},
    counters::COUNTER_COUNT,
    flow::{ConnEntry, ConnRef, FlowKey, DEFAULT_CONN_TABLE_SIZE},
    frag::{FragEntry, FragKey, FRAG_TABLE_SIZE},
    fwd::{NeighKey, NEIGH_MISS_SIZE},
    persist::Template,
    sysctl::Sysctls,
    service::{
        DestConf, DestCounters, HashTable, MhTable, LblcEntry, LblcKey, LblcrEntry, SchedState, ServiceConf, SvcKey, LBLC_CACHE_SIZE,
        MAX_DESTS, MAX_SERVICES,
    },
    stats::{IpvsStats, STATS_SLOTS},
    tcp_state::TIMEOUT_SLOTS,
};

/// Virtual service lookup: (VIP, port, protocol) -> slot in `SERVICES`.
#[map]
pub static SVC_INDEX: HashMap<SvcKey, u32> = HashMap::with_max_entries(MAX_SERVICES, 0);

/// Service configuration and its real-server list, by slot.
#[map]
pub static SERVICES: Array<ServiceConf> = Array::with_max_entries(MAX_SERVICES, 0);

/// Scheduler position per service slot (written by the dataplane on every new connection).
#[map]
pub static SCHED_STATE: Array<SchedState> = Array::with_max_entries(MAX_SERVICES, 0);

/// Real servers, by slot.
#[map]
pub static DESTS: Array<DestConf> = Array::with_max_entries(MAX_DESTS, 0);

/// Connection table, keyed on the client-side 5-tuple. Capacity is set by userspace from the
/// config (`connection_table_size`); a plain (not LRU) hash so that entries disappear only by
/// expiry, as in IPVS, and ActiveConn/InActConn stay exact.
#[map]
pub static CONNS: HashMap<FlowKey, ConnEntry> =
    HashMap::with_max_entries(DEFAULT_CONN_TABLE_SIZE, 0);

/// NAT reverse index: real-server-side 5-tuple -> `CONNS` key.
#[map]
pub static CONNS_OUT: HashMap<FlowKey, ConnRef> =
    HashMap::with_max_entries(DEFAULT_CONN_TABLE_SIZE, 0);

/// Per-state timeouts in seconds, indexed by `tcp_state` (UDP last). Filled by userspace.
#[map]
pub static TIMEOUTS: Array<u32> = Array::with_max_entries(TIMEOUT_SLOTS, 0);

/// Per-CPU verdict and drop-reason counters, indexed by `Counter`.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

/// The budget of ICMP errors the director originates, per CPU (lvs-common icmp_limit.rs).
#[map]
pub static ICMP_BUDGET: PerCpuArray<lvs_common::icmp_limit::IcmpBucket> = PerCpuArray::with_max_entries(1, 0);

/// `BPF_F_MMAPABLE`: userspace maps the array's memory and updates counters atomically there.
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// Connection counters per real server (same index as `DESTS`): global, changed with atomic
/// adds here and in userspace's mapping of the array (see `DestCounters`).
#[map]
pub static DEST_COUNTERS: Array<DestCounters> = Array::with_max_entries(MAX_DESTS, BPF_F_MMAPABLE);

/// lblc: the real server last chosen per (service, destination address).
#[map]
pub static LBLC_CACHE: LruHashMap<LblcKey, LblcEntry> = LruHashMap::with_max_entries(LBLC_CACHE_SIZE, 0);

/// lblcr: the set of real servers per (service, destination address).
#[map]
pub static LBLCR_CACHE: LruHashMap<LblcKey, LblcrEntry> = LruHashMap::with_max_entries(LBLC_CACHE_SIZE, 0);

/// dh and sh: the 256-bucket table of each service, by service slot.
#[map]
pub static HASH_TABLES: Array<HashTable> = Array::with_max_entries(MAX_SERVICES, 0);

/// `BPF_F_NO_PREALLOC`: an mh table is 8 KiB; only services that use mh get one.
const BPF_F_NO_PREALLOC: u32 = 1;

/// Persistence templates, keyed by `lvs_common::persist::template_key`. Not preallocated:
/// only persistent services make them, one per client network.
#[map]
pub static TEMPLATES: HashMap<FlowKey, Template> =
    HashMap::with_max_entries(DEFAULT_CONN_TABLE_SIZE, BPF_F_NO_PREALLOC);

/// Room for values too big for the 512-byte BPF stack (`persist::lookup`). Per-CPU, one
/// element; nothing in it outlives the packet.
#[repr(C)]
pub struct Scratch {
    pub tkey: FlowKey,
    pub ikey: FlowKey,
    pub moved: Template,
}

#[map]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// The Call-ID of each sip persistence engine template, under the template's key: for the
/// listing (`-L -c --persistent-conn`). Written by `lvs_xdp_sip`, removed with the template
/// by userspace. Not preallocated: only `--pe sip` services use it.
#[map]
pub static SIP_CALLIDS: HashMap<FlowKey, lvs_common::sip::CallId> =
    HashMap::with_max_entries(DEFAULT_CONN_TABLE_SIZE, BPF_F_NO_PREALLOC);

/// The hand-over between `lvs_xdp` and `lvs_xdp_sip` (see sip.rs). Not pinned: it holds
/// nothing between packets (a tail call stays on its CPU).
#[map]
pub static SIP_WORK: PerCpuArray<crate::sip::SipWork> = PerCpuArray::with_max_entries(1, 0);

/// The IPVS sysctls the dataplane honours (one element).
#[map]
pub static SYSCTLS: Array<Sysctls> = Array::with_max_entries(1, 0);

/// mh: the Maglev lookup table of each mh service, by service slot.
#[map]
pub static MH_TABLES: HashMap<u32, MhTable> = HashMap::with_max_entries(MAX_SERVICES, BPF_F_NO_PREALLOC);

/// Traffic statistics (Conns, In/OutPkts, In/OutBytes) per service slot, the totals, and per
/// real-server slot (`lvs_common::stats` has the layout). Per-CPU: plain adds, summed by
/// userspace.
#[map]
pub static IPVS_STATS: PerCpuArray<IpvsStats> = PerCpuArray::with_max_entries(STATS_SLOTS, 0);

/// Zero points of `IPVS_STATS` (`ipvsadm -Z`, reused slots). Written and read by userspace
/// only; defined here so that it is created and pinned with the others.
#[map]
pub static IPVS_STATS_ZERO: Array<IpvsStats> = Array::with_max_entries(STATS_SLOTS, 0);

/// Firewall-mark classifier: two complete rule sets, one live (see `lvs_common::classify`).
#[map]
pub static CLASSIFIER: Array<ClassRuleSet> = Array::with_max_entries(2, 0);

/// Small words steering the lookup: the live classifier set and the port-0 service count
/// (`lvs_common::classify::CTL_*`). An array, so the verifier inlines each read.
#[map]
pub static LOOKUP_CTL: Array<u32> = Array::with_max_entries(CTL_WORDS, 0);

/// Next hops a direct-routing packet found without a neighbour entry (the packet was dropped):
/// lvsd reads and deletes them and asks the kernel to resolve each (`NTF_USE`).
#[map]
pub static NEIGH_MISS: LruHashMap<NeighKey, u32> = LruHashMap::with_max_entries(NEIGH_MISS_SIZE, 0);

/// The address prefilter (`lvs_common::prefilter`): a bitmap of virtual and real-server
/// addresses, written by lvsd. An array, so the verifier inlines each read.
#[map]
pub static ADDR_FILTER: Array<u64> = Array::with_max_entries(lvs_common::prefilter::FILTER_ENTRIES, 0);

/// Scratch space for `bpf_fib_lookup`'s parameters (one per CPU), so that they are not on the
/// stack (see `forward::lookup`). Not pinned: it holds nothing between packets.
#[map]
pub static FIB_SCRATCH: PerCpuArray<crate::forward::FibParams> = PerCpuArray::with_max_entries(1, 0);

/// The IPv6 programs (`lvs_xdp6`, `lvs_xdp6_new` and `lvs_xdp6_send`, slots
/// `lvs_common::XDP6_SLOT`, `XDP6_NEW_SLOT`, `XDP6_SEND_SLOT`), the ICMP error relay
/// (`lvs_xdp_icmp`, `XDP_ICMP_SLOT`) and the tunnels (`lvs_xdp_tun`, `XDP_TUN_SLOT`), filled by lvsd. IPv6 runs in programs of its own, reached by tail
/// calls, because the IPv4 program alone takes most of the verifier's million-instruction
/// budget: see `lvs_xdp` and v6.rs. Also the sip Call-ID search (`lvs_xdp_sip`,
/// `XDP_SIP_SLOT`) and `lvs_xdp` itself (`XDP_MAIN_SLOT`), which the search tail-calls back.
#[map]
pub static XDP_PROGS: ProgramArray = ProgramArray::with_max_entries(16, 0);

/// Where the first fragment of each recent datagram went, for its later fragments
/// (`lvs_common::frag`; filled on the normal paths, read by `lvs_xdp_frag`, frag.rs). LRU:
/// datagrams whose later fragments never come make way by themselves.
#[map]
pub static FRAGS: LruHashMap<FragKey, FragEntry> = LruHashMap::with_max_entries(FRAG_TABLE_SIZE, 0);

/// Tail-calls the program in `XDP_PROGS` slot `slot`; returns only if there is none. The
/// helper is called here directly, always inlined: aya's `ProgramArray::tail_call`, called
/// from two places, became a function of its own, and the kernel refuses a tail call from a
/// subprogram of an object without BTF function information.
#[inline(always)]
pub fn tail_call(ctx: &aya_ebpf::programs::XdpContext, slot: u32) {
    use aya_ebpf::EbpfContext;
    // The map's definition is the static itself (its only field).
    let map = &XDP_PROGS as *const ProgramArray as *mut core::ffi::c_void;
    unsafe { aya_ebpf::helpers::bpf_tail_call(ctx.as_ptr(), map, slot) };
}

/// Per-CPU room for the IPv6 programs (see v6.rs): the transport-header offset the parser
/// launders through it, and the new-connection path's keys, kept off the 512-byte stack.
/// Not pinned: it holds nothing between packets (a tail call stays on its CPU).
pub struct V6Scratch {
    pub off: u64,
    pub key: FlowKey,
    pub skey: SvcKey,
    /// The scheduler's view of the packet; its pointers are null (the schedulers only read
    /// the addresses, ports, protocol and flags).
    pub view: crate::parse::Packet,
    /// What `lvs_xdp6_send` is to do (`v6::to_send`).
    pub addr: [u32; 4],
    pub port: u16,
    pub how: u8,
    /// Set by the parser: whether the packet is a first fragment (offset 0, more to come),
    /// and its fragment header's identification (network order).
    pub frag: u8,
    pub frag_id: u32,
}

// Per-CPU: only the CPU running the program touches its slot; the raw pointers in `view`
// are never dereferenced.
unsafe impl Sync for V6Scratch {}

#[map]
pub static V6_SCRATCH: PerCpuArray<V6Scratch> = PerCpuArray::with_max_entries(1, 0);

/// What the `CONNS` lookup of a packet's client-side key found (`conntrack::PRIOR_*`), for
/// the insert if the packet starts a connection (`conntrack::create`). Per CPU, not pinned:
/// written before the scheduler runs, read at the insert of the same packet (in `lvs_xdp6_new`
/// after a tail call, which stays on its CPU). Through memory rather than a variable: a
/// number the verifier knows (0 when nothing was found) kept across the scheduler splits its
/// states, and `lvs_xdp` went past the million instructions.
#[map]
pub static CONN_PRIOR: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// The real server of a tunnel packet on its way to `lvs_xdp_tun` (tun.rs). Per CPU, not
/// pinned: it holds nothing between packets.
#[map]
pub static TUN_SCRATCH: PerCpuArray<crate::tun::TunScratch> = PerCpuArray::with_max_entries(1, 0);
