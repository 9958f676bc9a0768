//! The IPVS sysctls the dataplane reads (value of `SYSCTLS`, a one-element array), with the
//! kernel's defaults. Userspace writes them from the config.

/// 8 bytes, no hidden padding. Each switch is 0 or 1.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Sysctls {
    /// `expire_nodest_conn` (default 0): a packet of a connection whose real server was
    /// deleted expires the connection (and a SYN is scheduled again) instead of being dropped;
    /// a new SYN on a connection whose server has weight 0 is scheduled again too.
    pub expire_nodest_conn: u32,
    /// `expire_quiescent_template` (default 0): a persistence template whose real server has
    /// weight 0 is invalidated at its next use, so the client is scheduled again.
    pub expire_quiescent_template: u32,
}

const _: () = assert!(core::mem::size_of::<Sysctls>() == 8);

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::Sysctls {}
}
