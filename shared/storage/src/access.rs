//! Who may call what. The storage function is invoked through two aliases that IAM tells
//! apart: `runtime`, granted to LTI Lambdas, answers only what launches need; `admin` answers
//! every operation. Anything else (the plain function name, `$LATEST`, a numbered version)
//! gets the runtime surface: an IAM grant on the function name must not open the admin one.

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
    /// (`arn:aws:lambda:region:account:function:name[:qualifier]`): the `admin` alias is the
    /// admin surface; no qualifier, `$LATEST`, a version number or any other alias the runtime
    /// one, so whatever nobody planned for gets least privilege.
    pub fn of_invoked_arn(invoked_arn: &str) -> Surface {
        match invoked_arn.split(':').nth(7) {
            Some("admin") => Surface::Admin,
            _ => Surface::Runtime,
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
    fn only_the_admin_alias_gets_the_admin_surface() {
        let function = "arn:aws:lambda:eu-west-1:123456789012:function:lti-storage";
        assert_eq!(Surface::of_invoked_arn(function), Surface::Runtime);
        for (qualifier, surface) in [
            ("admin", Surface::Admin),
            ("$LATEST", Surface::Runtime),
            ("runtime", Surface::Runtime),
            ("7", Surface::Runtime),
            ("live", Surface::Runtime),
            ("Admin", Surface::Runtime), // qualifiers are case-sensitive: another alias
            ("", Surface::Runtime),
        ] {
            let arn = format!("{function}:{qualifier}");
            assert_eq!(Surface::of_invoked_arn(&arn), surface, "{qualifier}");
        }
        // What `cargo lambda watch` sends as the invoked ARN, whatever the Invoke API call named.
        assert_eq!(Surface::of_invoked_arn("function-arn"), Surface::Runtime);
        assert_eq!(Surface::of_invoked_arn(""), Surface::Runtime);
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
