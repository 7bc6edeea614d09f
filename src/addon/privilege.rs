//! Least privilege (SPEC §6): a secret with `methods` / `paths` is only swapped into
//! requests inside them; a request outside them that carries the dummy is refused
//! before any swap.

use http::StatusCode;

use super::inspect::{in_headers, in_query};
use super::{Addon, FlowContext, Refuse};
use crate::secrets::has_dot_segments;

/// The least-privilege addon.
#[derive(Debug, Default)]
pub struct LeastPrivilege;

impl Addon for LeastPrivilege {
    fn name(&self) -> &'static str {
        "least-privilege"
    }

    fn on_request(
        &self,
        flow: &mut FlowContext,
        req: &mut http::request::Parts,
    ) -> Result<(), Refuse> {
        for binding in flow.bound().iter() {
            // Most secrets have no limits: the cheap check first.
            if binding.permits(&req.method, req.uri.path()) {
                continue;
            }
            let carried = in_headers(&req.headers, &binding.dummy)
                || (binding.query && in_query(&req.uri, &binding.dummy));
            if !carried {
                continue;
            }
            let methods = binding.methods.as_ref().map_or_else(
                || "any".to_string(),
                |m| m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", "),
            );
            let paths = binding.paths.as_ref().map_or_else(
                || "any".to_string(),
                |p| p.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", "),
            );
            let dotted = binding.paths.is_some() && has_dot_segments(req.uri.path());
            let (because, advice) = if dotted {
                (
                    ": the path has a dot segment (`.` or `..`, plain or percent-encoded), \
                     which the upstream could resolve outside the allowed paths",
                    "Send the path with its dot segments resolved.",
                )
            } else {
                (
                    "",
                    "A human can widen `methods` / `paths` of this secret in secrets.yaml.",
                )
            };
            return Err(Refuse {
                status: StatusCode::FORBIDDEN,
                code: "least-privilege",
                why: format!(
                    "secret `{}` may not be used for {} {}{because} (allowed methods: {methods}; paths: {paths})",
                    binding.name,
                    req.method,
                    req.uri.path()
                ),
                advice: advice.into(),
                alert: false,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addon::testing::{DUMMY, binding, flow, request};
    use http::Method;

    #[test]
    fn refuses_outside_methods_and_paths_only_when_the_dummy_is_used() {
        let mut b = binding(false);
        b.methods = Some(vec![Method::POST]);
        b.paths = Some(vec![glob::Pattern::new("/v1/messages*").unwrap()]);
        let mut f = flow(vec![b], true);
        let mut ok = request(
            "https://api.example.com/v1/messages?beta=1",
            &[("x-api-key", DUMMY)],
        );
        ok.method = Method::POST;
        assert!(LeastPrivilege.on_request(&mut f, &mut ok).is_ok());
        let mut wrong_path = request("https://api.example.com/v1/files", &[("x-api-key", DUMMY)]);
        wrong_path.method = Method::POST;
        let refuse = LeastPrivilege
            .on_request(&mut f, &mut wrong_path)
            .unwrap_err();
        assert_eq!(refuse.code, "least-privilege");
        let mut wrong_method = request(
            "https://api.example.com/v1/messages",
            &[("x-api-key", DUMMY)],
        );
        wrong_method.method = Method::DELETE;
        assert!(
            LeastPrivilege
                .on_request(&mut f, &mut wrong_method)
                .is_err()
        );
        let mut no_dummy = request("https://api.example.com/v1/files", &[]);
        assert!(LeastPrivilege.on_request(&mut f, &mut no_dummy).is_ok());
    }
}
