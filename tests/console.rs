//! The operator console (issue 15) in a real browser: Debian's headless Chromium driven over
//! WebDriver (`chromedriver`, from `scripts/chromium.sh`) against the sandbox served on
//! loopback — sign in, watch a demo call live with its transcript, read its detail and
//! evaluation, work the callback task it left, two operators claiming one task, the admin
//! pages, and the page's security and accessibility basics. Screenshots of each page are
//! saved (see `console/harness.rs`); `docs/console/` holds the ones the README shows.

#[path = "console/harness.rs"]
mod harness;

#[path = "console/actions.rs"]
mod actions;
#[path = "console/claims.rs"]
mod claims;
#[path = "console/journey.rs"]
mod journey;
#[path = "console/many.rs"]
mod many;
#[path = "console/signin.rs"]
mod signin;
