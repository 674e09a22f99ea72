//! How a route authenticates its caller: [`Auth`] (what the documents derive security and
//! answers from) and [`Guard`], which ties it to the [`Credential`] the handler receives:
//! nothing (`ops`, `public`), the tenant key's [`AuthContext`], the admin's [`AuditMeta`], or
//! a verified Twilio request ([`Signed`]). A route declared with one guard and a handler
//! that takes another credential does not compile.
//!
//! Admin routes name the roles a change needs ([`admin`]: `admin`; [`approver`]:
//! `approver`); every admin `GET` is a read, open to every role, so an `auditor` reads
//! everything and changes nothing. The bootstrap key (`root`) holds every role.

use std::future::Future;
use std::marker::PhantomData;

use actors::governance::AdminRole;
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
    /// An admin key (`x-admin-key`: the bootstrap key or a named identity's) holding any of
    /// these roles; every such path is a 404 without a configured bootstrap key.
    Admin(&'static [AdminRole]),
    /// A Twilio webhook, verified by `X-Twilio-Signature` with its account's auth token.
    Twilio,
    /// The media websocket: the stream token in its `start` message.
    StreamToken,
}

impl Auth {
    /// Whether the route belongs to the admin document (otherwise to the public one).
    pub fn is_admin(self) -> bool {
        matches!(self, Auth::Admin(_))
    }

    /// The guard a route of `method` really applies: an admin read (`GET`) is open to every
    /// role.
    pub fn for_method(self, method: &warp::http::Method) -> Self {
        match self {
            Auth::Admin(_) if method == warp::http::Method::GET => Auth::Admin(&AdminRole::ALL),
            other => other,
        }
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

/// An admin identity with the `admin` role (any role for a `GET`); the handler gets the
/// [`AuditMeta`] of the change, naming the identity.
pub const fn admin() -> Guard<AuditMeta> {
    Guard::of(Auth::Admin(&[AdminRole::Admin]))
}

/// An admin identity with the `approver` role (approvals).
pub const fn approver() -> Guard<AuditMeta> {
    Guard::of(Auth::Admin(&[AdminRole::Approver]))
}

/// An admin identity with the `admin` or the `approver` role (launch approvals, given in
/// one of the roles the identity holds).
pub const fn admin_or_approver() -> Guard<AuditMeta> {
    Guard::of(Auth::Admin(&[AdminRole::Admin, AdminRole::Approver]))
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
        auth: Auth,
        _route: &'static str,
        state: &'a AppState,
        caller: &'a Caller,
        _raw: Raw<'a>,
    ) -> impl Future<Output = Result<Self, ApiError>> + Send + 'a {
        let roles = match auth {
            Auth::Admin(roles) => roles,
            _ => &[AdminRole::Admin],
        };
        state.admin(caller, roles)
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
