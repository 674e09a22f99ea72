//! How a route authenticates its caller: [`Auth`] (what the documents derive security and
//! answers from) and [`Guard`], which ties it to the [`Credential`] the handler receives:
//! nothing (`ops`, `public`), the tenant key's [`AuthContext`], the admin's [`AuditMeta`], or
//! a verified Twilio request ([`Signed`]). A route declared with one guard and a handler
//! that takes another credential does not compile.

use std::future::Future;
use std::marker::PhantomData;

use actors::store::Scope;
use actors::tenant::{AuditMeta, AuthContext, TwilioAccount};
use bytes::Bytes;
use warp::http::HeaderMap;

use super::filters::Caller;
use super::webhooks::TwilioRequest;
use super::{ApiError, AppState};

/// How a route authenticates its caller (what the documents and the filter derive from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No credential and no limit (health probes).
    Ops,
    /// No credential, limited per client address (metrics, documents).
    Public,
    /// A tenant API key holding any of these scopes (none listed: any key).
    Tenant(&'static [Scope]),
    /// The admin key (`x-admin-key`); every such path is a 404 without a configured key.
    Admin,
    /// A Twilio webhook, verified by `X-Twilio-Signature` with its account's auth token.
    Twilio,
    /// The media websocket: the stream token in its `start` message.
    StreamToken,
}

impl Auth {
    /// Whether the route belongs to the admin document (otherwise to the public one).
    pub fn is_admin(self) -> bool {
        matches!(self, Auth::Admin)
    }
}

/// A route's authentication, typed by what it gives the handler: a [`Credential`].
#[derive(Debug, Clone, Copy)]
pub struct Guard<A> {
    auth: Auth,
    credential: PhantomData<fn() -> A>,
}

impl<A> Guard<A> {
    const fn of(auth: Auth) -> Self {
        Self {
            auth,
            credential: PhantomData,
        }
    }

    /// The authentication it stands for.
    pub fn auth(&self) -> Auth {
        self.auth
    }
}

/// No credential, no limit (health probes).
pub const fn ops() -> Guard<()> {
    Guard::of(Auth::Ops)
}

/// No credential, limited per client address.
pub const fn public() -> Guard<()> {
    Guard::of(Auth::Public)
}

/// A tenant key with any of `scopes` (an empty list: any key); the handler gets its
/// [`AuthContext`].
pub const fn tenant(scopes: &'static [Scope]) -> Guard<AuthContext> {
    Guard::of(Auth::Tenant(scopes))
}

/// The admin key; the handler gets the [`AuditMeta`] of the change.
pub const fn admin() -> Guard<AuditMeta> {
    Guard::of(Auth::Admin)
}

/// A signed Twilio webhook; the handler gets the verified [`Signed`] request.
pub const fn twilio() -> Guard<Signed> {
    Guard::of(Auth::Twilio)
}

/// A verified Twilio webhook: the account that signed it and the request's parameters.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The account whose auth token verified the signature.
    pub account: TwilioAccount,
    /// The request (every parameter is covered by the signature).
    pub request: TwilioRequest,
}

/// What the raw request holds, for authentication.
pub struct Raw<'a> {
    /// Path as received.
    pub path: &'a str,
    /// Raw query string (empty when absent).
    pub query: &'a str,
    /// Headers.
    pub headers: &'a HeaderMap,
    /// Body (empty for routes without one).
    pub body: &'a Bytes,
}

/// What a [`Guard`] establishes before the handler runs.
pub trait Credential: Sized + Send + 'static {
    /// Authenticates the request for a route whose guard is `auth` and template `route`.
    fn check<'a>(
        auth: Auth,
        route: &'static str,
        state: &'a AppState,
        caller: &'a Caller,
        raw: Raw<'a>,
    ) -> impl Future<Output = Result<Self, ApiError>> + Send + 'a;
}

impl Credential for () {
    fn check<'a>(
        auth: Auth,
        _route: &'static str,
        state: &'a AppState,
        caller: &'a Caller,
        _raw: Raw<'a>,
    ) -> impl Future<Output = Result<Self, ApiError>> + Send + 'a {
        let result = match auth {
            Auth::Public => state.ip_guard.check(caller.ip),
            _ => Ok(()),
        };
        std::future::ready(result)
    }
}

impl Credential for AuthContext {
    fn check<'a>(
        auth: Auth,
        _route: &'static str,
        state: &'a AppState,
        caller: &'a Caller,
        _raw: Raw<'a>,
    ) -> impl Future<Output = Result<Self, ApiError>> + Send + 'a {
        let scopes = match auth {
            Auth::Tenant(scopes) => scopes,
            _ => &[],
        };
        state.tenant_any(caller, scopes)
    }
}

impl Credential for AuditMeta {
    fn check<'a>(
        _auth: Auth,
        _route: &'static str,
        state: &'a AppState,
        caller: &'a Caller,
        _raw: Raw<'a>,
    ) -> impl Future<Output = Result<Self, ApiError>> + Send + 'a {
        std::future::ready(state.admin(caller))
    }
}

impl Credential for Signed {
    fn check<'a>(
        _auth: Auth,
        route: &'static str,
        state: &'a AppState,
        _caller: &'a Caller,
        raw: Raw<'a>,
    ) -> impl Future<Output = Result<Self, ApiError>> + Send + 'a {
        let request = TwilioRequest::new(raw.path, raw.query, raw.headers, raw.body);
        async move {
            let account = state.verify_twilio(&request, route).await?;
            Ok(Signed { account, request })
        }
    }
}
