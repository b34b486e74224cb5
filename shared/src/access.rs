//! Who may call what. The storage function is invoked through two aliases that IAM tells
//! apart: `runtime`, granted to LTI Lambdas, answers only what launches need; `admin` (and an
//! unqualified call, as `cargo lambda watch` makes) answers every operation.

/// Which callers an operation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Every LTI Lambda: launches, nonces, sessions.
    Runtime,
    /// LTI Lambdas that register platforms themselves (dynamic registration), when enabled.
    Registration,
    /// Operators: listing, updates, deletes, migrations.
    Admin,
}

/// The set of operations an invocation may call, from the alias it was invoked through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Runtime,
    Admin,
}

impl Surface {
    /// The surface of an invocation of `invoked_arn`
    /// (`arn:aws:lambda:region:account:function:name[:qualifier]`): `admin`, `$LATEST` or no
    /// qualifier is the admin surface, any other qualifier the runtime one, so an alias nobody
    /// planned for gets least privilege.
    pub fn of_invoked_arn(invoked_arn: &str) -> Surface {
        match invoked_arn.split(':').nth(7) {
            None | Some("admin") | Some("$LATEST") => Surface::Admin,
            Some(_) => Surface::Runtime,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Runtime => "runtime",
            Surface::Admin => "admin",
        }
    }

    /// Whether `op`, of `access`, may be called on this surface.
    pub fn allows(self, access: Access, dynamic_registration: bool) -> bool {
        match (self, access) {
            (Surface::Admin, _) | (Surface::Runtime, Access::Runtime) => true,
            (Surface::Runtime, Access::Registration) => dynamic_registration,
            (Surface::Runtime, Access::Admin) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_invoked_alias_decides_the_surface() {
        let function = "arn:aws:lambda:eu-west-1:123456789012:function:lti-storage";
        assert_eq!(Surface::of_invoked_arn(function), Surface::Admin);
        for (qualifier, surface) in [
            ("admin", Surface::Admin),
            ("$LATEST", Surface::Admin),
            ("runtime", Surface::Runtime),
            ("7", Surface::Runtime),
            ("live", Surface::Runtime),
        ] {
            let arn = format!("{function}:{qualifier}");
            assert_eq!(Surface::of_invoked_arn(&arn), surface, "{qualifier}");
        }
    }

    #[test]
    fn the_runtime_surface_registers_platforms_only_when_enabled() {
        use Access::*;
        for access in [Runtime, Registration, Admin] {
            assert!(Surface::Admin.allows(access, false));
        }
        assert!(Surface::Runtime.allows(Runtime, false));
        assert!(!Surface::Runtime.allows(Registration, false));
        assert!(Surface::Runtime.allows(Registration, true));
        assert!(!Surface::Runtime.allows(Admin, true));
    }
}
