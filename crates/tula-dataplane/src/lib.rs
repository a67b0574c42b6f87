//! Loads tula's XDP balancer, attaches it and programs its maps.
