//! The demo network in namespaces (tula lab).
