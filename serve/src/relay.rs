//! The on-demand relay: copying connections between the public port and the server's private one, counting requests.
