//! Ports that are never handed out, even when free, and why.
//!
//! Four sources: the WHATWG "bad ports" that browsers refuse to connect to,
//! well-known services that live inside the default ranges, the user's
//! `exclude` list, and the kernel's `ip_local_reserved_ports`.

use std::fmt;

/// The WHATWG fetch standard's "bad ports": a browser refuses to connect to
/// them, so a dev server there is unreachable from a browser.
pub const BROWSER_BAD_PORTS: &[u16] = &[
    1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102,
    103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465,
    512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993,
    995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668,
    6669, 6679, 6697, 10080,
];

/// Well-known services whose default ports fall inside portd's default
/// ranges; a project given one of these would collide with the service the
/// day it is installed. Below 1024 (reachable only with
/// `allow_privileged`), the system services that the browsers' list does
/// not already cover.
pub const WELL_KNOWN: &[(u16, &str)] = &[
    (67, "DHCP server"),
    (68, "DHCP client"),
    (80, "HTTP"),
    (88, "Kerberos"),
    (162, "SNMP traps"),
    (443, "HTTPS"),
    (445, "SMB file sharing"),
    (464, "Kerberos password change"),
    (500, "IPsec key exchange (IKE)"),
    (546, "DHCPv6 client"),
    (547, "DHCPv6 server"),
    (631, "IPP printing (CUPS)"),
    (749, "Kerberos administration"),
    (853, "DNS over TLS"),
    (873, "rsync daemon"),
    (4000, "Phoenix and Jekyll dev servers"),
    (4040, "Spark UI and the ngrok inspector"),
    (4173, "Vite preview server"),
    (4200, "Angular CLI dev server"),
    (4222, "NATS client port"),
    (4317, "OpenTelemetry OTLP/gRPC"),
    (4318, "OpenTelemetry OTLP/HTTP"),
    (4321, "Astro dev server"),
    (4369, "Erlang port mapper (epmd)"),
    (4443, "Pharos/alternate HTTPS"),
    (4500, "IPsec NAT traversal"),
    (4566, "LocalStack edge port"),
    (4789, "VXLAN"),
    (4848, "GlassFish admin console"),
    (10000, "Webmin"),
    (10050, "Zabbix agent"),
    (10051, "Zabbix server"),
    (10250, "Kubernetes kubelet API"),
    (10255, "Kubernetes kubelet read-only API"),
    (10256, "Kubernetes kube-proxy health"),
    (10257, "Kubernetes controller manager"),
    (10259, "Kubernetes scheduler"),
    (11211, "memcached"),
    (11434, "Ollama"),
    (14250, "Jaeger collector gRPC"),
    (14268, "Jaeger collector HTTP"),
    (15672, "RabbitMQ management"),
    (16686, "Jaeger UI"),
    (19999, "Netdata"),
];

/// Why a port is excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Excluded {
    /// Browsers refuse to connect to it.
    BrowserUnsafe,
    /// The default port of a well-known service.
    WellKnown(&'static str),
    /// Listed in the configuration's `exclude`.
    User,
    /// Listed in the kernel's `net.ipv4.ip_local_reserved_ports`.
    KernelReserved,
}

impl fmt::Display for Excluded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Excluded::BrowserUnsafe => {
                f.write_str("browsers refuse to connect to it (WHATWG bad port)")
            }
            Excluded::WellKnown(s) => write!(f, "default port of {s}"),
            Excluded::User => f.write_str("listed in the configuration's `exclude`"),
            Excluded::KernelReserved => {
                f.write_str("reserved by the kernel (net.ipv4.ip_local_reserved_ports)")
            }
        }
    }
}

/// The full set of excluded ports, as sorted disjoint intervals per source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exclusions {
    user: Vec<(u16, u16)>,
    kernel: Vec<(u16, u16)>,
}

impl Exclusions {
    /// Exclusions from the user's list and the kernel's reserved ports.
    pub fn new(user: Vec<(u16, u16)>, kernel: Vec<(u16, u16)>) -> Self {
        Exclusions { user, kernel }
    }

    /// The user's list plus what the kernel reserves on this machine.
    pub fn with_kernel(user: Vec<(u16, u16)>) -> Self {
        Self::new(user, crate::sys::reserved_ports())
    }

    /// Calls `f` with every excluded port in `start..=end` (some may come
    /// more than once): what [`Exclusions::reason`] names, without asking
    /// port by port.
    pub fn each_between(&self, start: u16, end: u16, mut f: impl FnMut(u16)) {
        let within = |p: u16| (start..=end).contains(&p);
        BROWSER_BAD_PORTS.iter().copied().filter(|&p| within(p)).for_each(&mut f);
        WELL_KNOWN.iter().map(|&(p, _)| p).filter(|&p| within(p)).for_each(&mut f);
        for &(a, b) in self.user.iter().chain(&self.kernel) {
            (a.max(start)..=b.min(end)).for_each(&mut f);
        }
    }

    /// Why `port` is excluded, or `None` if it may be handed out.
    pub fn reason(&self, port: u16) -> Option<Excluded> {
        let within = |v: &[(u16, u16)]| v.iter().any(|&(a, b)| (a..=b).contains(&port));
        if BROWSER_BAD_PORTS.binary_search(&port).is_ok() {
            Some(Excluded::BrowserUnsafe)
        } else if let Ok(i) = WELL_KNOWN.binary_search_by_key(&port, |&(p, _)| p) {
            Some(Excluded::WellKnown(WELL_KNOWN[i].1))
        } else if within(&self.user) {
            Some(Excluded::User)
        } else if within(&self.kernel) {
            Some(Excluded::KernelReserved)
        } else {
            None
        }
    }
}

/// Parses a port list in the kernel's format (`"8080,9000-9010"`); invalid
/// items are skipped, since the kernel wrote them.
pub fn parse_port_list(s: &str) -> Vec<(u16, u16)> {
    s.split(',')
        .filter_map(|item| {
            let item = item.trim();
            let (a, b) = item.split_once('-').unwrap_or((item, item));
            let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
            (a <= b).then_some((a, b))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_for_binary_search() {
        assert!(BROWSER_BAD_PORTS.windows(2).all(|w| w[0] < w[1]));
        assert!(WELL_KNOWN.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn each_between_names_exactly_the_excluded_ports() {
        let ex = Exclusions::new(vec![(4010, 4012), (3990, 4001)], vec![(4998, 5005)]);
        let mut got = std::collections::BTreeSet::new();
        ex.each_between(4000, 4999, |p| {
            got.insert(p);
        });
        let want: std::collections::BTreeSet<u16> =
            (4000..=4999).filter(|&p| ex.reason(p).is_some()).collect();
        assert_eq!(got, want);
        assert!(want.contains(&4000) && want.contains(&4011) && want.contains(&4999));
    }

    #[test]
    fn reasons() {
        let ex = Exclusions::new(vec![(4100, 4100), (4200, 4210)], vec![(4500, 4600)]);
        assert_eq!(ex.reason(4045), Some(Excluded::BrowserUnsafe));
        assert_eq!(ex.reason(10080), Some(Excluded::BrowserUnsafe));
        assert_eq!(ex.reason(4369), Some(Excluded::WellKnown("Erlang port mapper (epmd)")));
        assert_eq!(ex.reason(4100), Some(Excluded::User));
        assert_eq!(ex.reason(4205), Some(Excluded::User));
        assert_eq!(ex.reason(4550), Some(Excluded::KernelReserved));
        assert_eq!(ex.reason(4101), None);
    }

    #[test]
    fn kernel_list_format() {
        assert_eq!(parse_port_list(""), vec![]);
        assert_eq!(parse_port_list("8080,9000-9010\n"), vec![(8080, 8080), (9000, 9010)]);
        assert_eq!(parse_port_list("x,70000,5-3,7"), vec![(7, 7)]);
    }
}
