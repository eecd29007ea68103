//! Roles and the access table: every console route is listed here with who may use it, and the
//! access layer refuses any route missing from the table (deny by default).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The queue, callbacks and call history (PHI, audited).
    FrontDesk,
    /// Accounts and, later, flows; no patient data.
    Admin,
    /// Call history and (later) audit review.
    Compliance,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::FrontDesk, Role::Admin, Role::Compliance];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::FrontDesk => "front_desk",
            Role::Admin => "admin",
            Role::Compliance => "compliance",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::FrontDesk => "Front desk",
            Role::Admin => "Administrator",
            Role::Compliance => "Compliance",
        }
    }

    /// Where this role lands after signing in.
    pub fn home(self) -> &'static str {
        match self {
            Role::FrontDesk => "/queue",
            Role::Admin => "/admin/users",
            Role::Compliance => "/calls",
        }
    }
}

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (sign-in pages, assets).
    Public,
    /// A browser half-way through signing in (password given; code, enrollment or new password
    /// due).
    SigningIn,
    /// Signed in with one of these roles.
    Roles(&'static [Role]),
}

const FRONT_DESK: &[Role] = &[Role::FrontDesk];
const HISTORY: &[Role] = &[Role::FrontDesk, Role::Compliance];
const ADMIN: &[Role] = &[Role::Admin];
const ANY_ROLE: &[Role] = &Role::ALL;

/// Every route (as axum matches it) and its access.
pub const ROUTES: &[(&str, Access)] = &[
    ("/", Access::Roles(ANY_ROLE)),
    ("/login", Access::Public),
    ("/logout", Access::Public),
    ("/mfa", Access::SigningIn),
    ("/mfa/enroll", Access::SigningIn),
    ("/password", Access::SigningIn),
    ("/queue", Access::Roles(FRONT_DESK)),
    ("/queue/events", Access::Roles(FRONT_DESK)),
    ("/escalations/{id}", Access::Roles(FRONT_DESK)),
    ("/callbacks", Access::Roles(FRONT_DESK)),
    ("/callbacks/{id}/done", Access::Roles(FRONT_DESK)),
    ("/calls", Access::Roles(HISTORY)),
    ("/calls/{id}", Access::Roles(HISTORY)),
    ("/admin/users", Access::Roles(ADMIN)),
    ("/static/{file}", Access::Public),
];

/// The declared access of a matched route; `None` for a route nobody declared.
pub fn access_of(route: &str) -> Option<Access> {
    ROUTES.iter().find(|(r, _)| *r == route).map(|(_, a)| *a)
}

/// The navigation links `role` may follow.
pub fn nav_links(role: Role) -> &'static [(&'static str, &'static str)] {
    match role {
        Role::FrontDesk => &[
            ("/queue", "Queue"),
            ("/callbacks", "Callbacks"),
            ("/calls", "Call history"),
        ],
        Role::Admin => &[("/admin/users", "Accounts")],
        Role::Compliance => &[("/calls", "Call history")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_unknown_routes_have_no_access() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            for (href, _) in nav_links(r) {
                match access_of(href) {
                    Some(Access::Roles(allowed)) => assert!(allowed.contains(&r), "{href}"),
                    other => panic!("{href}: {other:?}"),
                }
            }
            assert!(matches!(access_of(r.home()), Some(Access::Roles(a)) if a.contains(&r)));
        }
        assert_eq!(Role::parse("root"), None);
        assert_eq!(access_of("/secret"), None);
        assert_eq!(
            access_of("/admin/users"),
            Some(Access::Roles(&[Role::Admin]))
        );
    }
}
