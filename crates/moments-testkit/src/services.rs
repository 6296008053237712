//! Whether tests may skip a service that is not reachable.
//!
//! On a newcomer's machine PostgreSQL may be missing: its tests then skip, and say so loudly
//! on the terminal (not through the test harness's captured output). In CI,
//! `MOMENTS_TEST_REQUIRE_SERVICES=1` makes a missing service a failure.

use std::io::Write as _;
use std::sync::Once;

/// The variable that makes unreachable services a test failure.
pub const REQUIRE_VAR: &str = "MOMENTS_TEST_REQUIRE_SERVICES";

/// Whether this run must have every service.
pub fn services_required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes"))
}

/// Handles a service that could not be reached: panics when services are required, and
/// otherwise prints a banner once per test binary and lets the caller skip.
pub fn unreachable_service(service: &str, url: &str, error: &dyn std::fmt::Display) {
    assert!(
        !services_required(),
        "{service} is required ({REQUIRE_VAR} is set) but not reachable at {url}: {error}"
    );
    static BANNER: Once = Once::new();
    BANNER.call_once(|| {
        // Written to the process's stderr directly, so the test harness does not capture it.
        let _ = writeln!(
            std::io::stderr().lock(),
            "\n\
             ****************************************************************\n\
             * SKIPPED: {service} tests: not reachable at {url}\n\
             *   ({error})\n\
             * Start {service} (or point its MOMENTS_TEST_*_URL at one); set\n\
             *   {REQUIRE_VAR}=1 to make this a failure (CI does).\n\
             ****************************************************************\n"
        );
    });
}
