//! ipvsadm-compatible CLI (being written).
