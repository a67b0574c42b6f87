//! Host networking through netlink: namespaces, links, addresses, routes, neighbours.
