//! Rate limits per route class, the client address behind trusted proxies, and the IETF
//! rate-limit headers.
//!
//! Every `/api` request (and every media download) belongs to one class: `login`, `register`,
//! `refresh` and `upload` by route, `read` for the other GETs, `write` for the other changes.
//! The auth classes are keyed by client address; the others by the signed-in user or the API
//! key when the request carries valid credentials, and by client address otherwise.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, web};
use moments_domain::limit::{Quota, RateDecision};
use moments_domain::ports::RateLimiter;

use crate::AppState;
use crate::error::ApiError;
use crate::problem;

/// `RateLimit-Policy` (IETF httpapi rate-limit headers draft).
pub const RATE_LIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (IETF httpapi rate-limit headers draft).
pub const RATE_LIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// A class of routes sharing one rate-limit policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteClass {
    /// `POST /auth/login`.
    Login,
    /// `POST /auth/register`.
    Register,
    /// `POST /auth/refresh`.
    Refresh,
    /// Every other GET.
    Read,
    /// Every other change.
    Write,
    /// `POST /media`.
    Upload,
}

impl RouteClass {
    /// Every class, in the order of the API guide.
    pub const ALL: [Self; 6] = [
        Self::Login,
        Self::Register,
        Self::Refresh,
        Self::Read,
        Self::Write,
        Self::Upload,
    ];

    /// The name in headers and settings (`MOMENTS_RATE_LIMIT_<NAME>`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Register => "register",
            Self::Refresh => "refresh",
            Self::Read => "read",
            Self::Write => "write",
            Self::Upload => "upload",
        }
    }

    /// The class of a request to `path` (under `/api`, `/api/v1`, or a media download).
    pub fn of(method: &Method, path: &str) -> Self {
        let route = path
            .strip_prefix("/api/v1")
            .or_else(|| path.strip_prefix("/api"))
            .unwrap_or(path)
            .trim_end_matches('/');
        match (method.as_str(), route) {
            ("POST", "/auth/login") => Self::Login,
            ("POST", "/auth/register") => Self::Register,
            ("POST", "/auth/refresh") => Self::Refresh,
            ("POST", "/media") => Self::Upload,
            // Every step of a sign-in through a provider counts as a login; unlinking is a
            // write and the provider list a read.
            ("GET" | "POST", r)
                if r.starts_with("/auth/oauth/") && r != "/auth/oauth/providers" =>
            {
                Self::Login
            }
            ("GET" | "HEAD", _) => Self::Read,
            _ => Self::Write,
        }
    }

    /// Whether requests are keyed by client address whatever credentials they carry.
    fn by_address(self) -> bool {
        matches!(self, Self::Login | Self::Register | Self::Refresh)
    }
}

/// The quota of each route class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitPolicies([Quota; 6]);

impl RateLimitPolicies {
    /// The quota of `class`.
    pub fn get(&self, class: RouteClass) -> Quota {
        self.0[Self::index(class)]
    }

    /// Replaces the quota of `class`.
    pub fn set(&mut self, class: RouteClass, quota: Quota) {
        self.0[Self::index(class)] = quota;
    }

    /// The variants are declared in the order of [`RouteClass::ALL`].
    fn index(class: RouteClass) -> usize {
        class as usize
    }
}

impl Default for RateLimitPolicies {
    /// login 10/60s, register 10/600s, refresh 30/60s, read 600/60s, write 120/60s,
    /// upload 30/60s.
    fn default() -> Self {
        Self([
            Quota::constant(10, 60),
            Quota::constant(10, 600),
            Quota::constant(30, 60),
            Quota::constant(600, 60),
            Quota::constant(120, 60),
            Quota::constant(30, 60),
        ])
    }
}

/// The limiter and the policies it enforces.
#[derive(Clone)]
pub struct RateLimits {
    /// Shared (Redis) or in-process.
    pub limiter: Arc<dyn RateLimiter>,
    /// The quota of each class.
    pub policies: RateLimitPolicies,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("policies", &self.policies)
            .finish_non_exhaustive()
    }
}

/// An address block: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpBlock {
    network: IpAddr,
    prefix: u8,
}

impl IpBlock {
    /// Whether `ip` is inside the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpBlock {
    type Err = String;

    /// `203.0.113.7`, `10.0.0.0/8`, `2001:db8::/32`.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not an address or a CIDR block such as 10.0.0.0/8");
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network = IpAddr::from_str(address.trim())
            .map_err(|_| bad())?
            .to_canonical();
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(bad)?,
        };
        Ok(Self { network, prefix })
    }
}

/// The proxies whose `Forwarded` and `X-Forwarded-For` headers are believed. Empty by default:
/// the socket's peer is the client, loopback included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpBlock>);

impl TrustedProxies {
    /// Parses a comma-separated list of addresses and CIDR blocks.
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(IpBlock::from_str)
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|block| block.contains(ip))
    }

    /// The client's address: the socket's peer, unless the peer is a trusted proxy; then the
    /// nearest address in the forwarding chain that is not a trusted proxy (read right to
    /// left, so entries a client wrote itself further left are never reached while a nearer
    /// untrusted hop exists). `Forwarded` is preferred to `X-Forwarded-For` when both are sent.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?.to_canonical();
        if !self.contains(peer) {
            return Some(peer);
        }
        let chain = forwarded_chain(headers);
        let mut nearest = peer;
        for hop in chain.iter().rev() {
            match hop {
                // An unknown or obfuscated hop: the last address we can vouch for stands.
                None => return Some(nearest),
                Some(ip) if self.contains(*ip) => nearest = *ip,
                Some(ip) => return Some(*ip),
            }
        }
        Some(nearest)
    }
}

/// The forwarding chain, client first: from every `Forwarded` header's `for=` parameters, or
/// if there is none, from every `X-Forwarded-For` header. `None` marks a hop that is not an
/// address (`unknown`, an obfuscated identifier, garbage).
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name| {
        headers
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let forwarded = values(header::FORWARDED);
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.trim().split_once('='))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, value)| parse_node(value.trim().trim_matches('"')))
            })
            .collect();
    }
    values(HeaderName::from_static("x-forwarded-for"))
        .iter()
        .map(|hop| parse_node(hop))
        .collect()
}

/// An address from a forwarding header: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711`,
/// `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        return rest
            .split(']')
            .next()?
            .parse::<IpAddr>()
            .ok()
            .map(|ip| ip.to_canonical());
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let (host, _port) = node.rsplit_once(':')?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The client address of a request, by the application's trusted proxies.
pub fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr().map(|addr| addr.ip());
    match req.app_data::<web::Data<AppState>>() {
        Some(state) => state.trusted_proxies.client_ip(peer, req.headers()),
        None => peer.map(|ip| ip.to_canonical()),
    }
}

/// The limiter key of an address: IPv6 clients by their /64, which one subscriber usually
/// holds whole (keying single IPv6 addresses would let anybody rotate through billions).
fn address_key(ip: Option<IpAddr>) -> String {
    match ip {
        Some(IpAddr::V4(v4)) => format!("ip:{v4}"),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("ip6:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        None => "ip:unknown".to_owned(),
    }
}

/// Whom a request counts against.
fn limit_key(req: &HttpRequest, class: RouteClass) -> String {
    if !class.by_address()
        && let Some(actor) = crate::extract::credentials_of(req)
    {
        return match actor.credential {
            moments_domain::account::Credential::Session(_) => format!("user:{}", actor.user_id),
            moments_domain::account::Credential::ApiKey(id) => format!("key:{id}"),
        };
    }
    address_key(client_ip(req))
}

/// The `RateLimit-Policy` and `RateLimit` values for a decision.
fn headers_for(
    class: RouteClass,
    quota: Quota,
    decision: &RateDecision,
) -> [(HeaderName, String); 2] {
    [
        (
            RATE_LIMIT_POLICY,
            format!(
                "\"{}\";q={};w={}",
                class.name(),
                quota.limit(),
                quota.window_secs()
            ),
        ),
        (
            RATE_LIMIT,
            format!(
                "\"{}\";r={};t={}",
                class.name(),
                decision.remaining,
                decision.reset_after_secs()
            ),
        ),
    ]
}

/// Middleware: spends one request of the caller's quota for the route's class, refuses with
/// 429 `rate_limited` and `Retry-After` when none is left, and adds the rate-limit headers to
/// every response.
pub async fn limit_rate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let class = RouteClass::of(req.method(), req.path());
    let quota = state.rate_limits.policies.get(class);
    let key = format!("{}:{}", class.name(), limit_key(req.request(), class));
    let decision = match state.rate_limits.limiter.acquire(&key, quota).await {
        Ok(decision) => decision,
        Err(e) => {
            // Adapters fall back to per-instance limits themselves; an adapter that cannot
            // decide at all lets the request through rather than fail it.
            tracing::warn!(error = %e, class = class.name(), "rate limiter failed; request allowed");
            return Ok(next.call(req).await?.map_into_boxed_body());
        }
    };
    let headers = headers_for(class, quota, &decision);
    let mut res = if decision.allowed {
        next.call(req).await?.map_into_boxed_body()
    } else {
        let error = ApiError::new(
            &problem::RATE_LIMITED,
            format!(
                "too many {} requests; retry in {} s",
                class.name(),
                decision.retry_after_secs()
            ),
        )
        .with_retry_after(decision.retry_after_secs());
        req.error_response(error)
    };
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            res.headers_mut().insert(name, value);
        }
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn classes_by_route() {
        let cases = [
            (Method::POST, "/api/v1/auth/login", RouteClass::Login),
            (Method::POST, "/api/auth/register", RouteClass::Register),
            (Method::POST, "/api/v1/auth/refresh/", RouteClass::Refresh),
            (Method::POST, "/api/v1/media", RouteClass::Upload),
            (Method::GET, "/media/abc.png", RouteClass::Read),
            (Method::GET, "/api/v1/posts", RouteClass::Read),
            (Method::POST, "/api/v1/posts", RouteClass::Write),
            (Method::DELETE, "/api/v1/auth/sessions/x", RouteClass::Write),
            (Method::GET, "/api/v1/auth/login", RouteClass::Read),
            (
                Method::GET,
                "/api/v1/auth/oauth/google/start",
                RouteClass::Login,
            ),
            (
                Method::POST,
                "/api/auth/oauth/google/callback",
                RouteClass::Login,
            ),
            (
                Method::POST,
                "/api/v1/auth/oauth/exchange",
                RouteClass::Login,
            ),
            (
                Method::GET,
                "/api/v1/auth/oauth/providers",
                RouteClass::Read,
            ),
            (
                Method::DELETE,
                "/api/v1/auth/oauth/google",
                RouteClass::Write,
            ),
        ];
        for (method, path, class) in cases {
            assert_eq!(RouteClass::of(&method, path), class, "{method} {path}");
        }
        let defaults = RateLimitPolicies::default();
        assert_eq!(defaults.get(RouteClass::Login).to_string(), "10/60s");
        assert_eq!(defaults.get(RouteClass::Upload).to_string(), "30/60s");
    }

    #[test]
    fn blocks_parse_and_match() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.0.2.7 ,2001:db8::/32").unwrap();
        assert!(proxies.contains(ip("10.1.2.3")));
        assert!(proxies.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped");
        assert!(proxies.contains(ip("192.0.2.7")));
        assert!(!proxies.contains(ip("192.0.2.8")));
        assert!(proxies.contains(ip("2001:db8:1::5")));
        assert!(!proxies.contains(ip("2001:db9::5")));
        assert!(
            TrustedProxies::parse("0.0.0.0/0")
                .unwrap()
                .contains(ip("8.8.8.8"))
        );
        for bad in ["10.0.0.0/33", "example.com", "10.0.0/8", "::/129"] {
            assert!(TrustedProxies::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            TrustedProxies::parse(" ").unwrap(),
            TrustedProxies::default()
        );
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_peers() {
        let none = TrustedProxies::default();
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(
            none.client_ip(Some(ip("127.0.0.1")), &spoofed),
            Some(ip("127.0.0.1"))
        );

        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let peer = Some(ip("10.0.0.2"));
        assert_eq!(proxies.client_ip(peer, &spoofed), Some(ip("1.2.3.4")));
        // A client that writes its own header gets the proxy's append after it: the nearest
        // untrusted hop is the real one.
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.3")]);
        assert_eq!(proxies.client_ip(peer, &chain), Some(ip("203.0.113.9")));
        // Several header lines form one list.
        let split = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        assert_eq!(proxies.client_ip(peer, &split), Some(ip("203.0.113.9")));
        // Forwarded wins over X-Forwarded-For; ports and IPv6 brackets are understood.
        let both = headers(&[
            (
                "forwarded",
                "for=\"[2001:db8::1]:4711\";proto=https, for=198.51.100.2:80",
            ),
            ("x-forwarded-for", "6.6.6.6"),
        ]);
        assert_eq!(proxies.client_ip(peer, &both), Some(ip("198.51.100.2")));
        // Garbage or unknown hops stop the walk at the last trusted address.
        let junk = headers(&[("x-forwarded-for", "1.2.3.4, not-an-ip")]);
        assert_eq!(proxies.client_ip(peer, &junk), peer);
        let unknown = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(proxies.client_ip(peer, &unknown), peer);
        // Nothing forwarded: the proxy itself.
        assert_eq!(proxies.client_ip(peer, &HeaderMap::new()), peer);
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        assert_eq!(
            address_key(Some(ip("2001:db8:1:2:aaaa::1"))),
            address_key(Some(ip("2001:db8:1:2:bbbb::9")))
        );
        assert_ne!(
            address_key(Some(ip("2001:db8:1:2::1"))),
            address_key(Some(ip("2001:db8:1:3::1")))
        );
        assert_eq!(address_key(Some(ip("192.0.2.1"))), "ip:192.0.2.1");
    }
}
