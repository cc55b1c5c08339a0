//! Query parameters of the status endpoints: `minutes` (how far back) and `limit` (how many
//! rows), both bounded. Unknown, repeated or out-of-range parameters are refused with a 400 that
//! names the parameter.

/// The most a status query looks back: 7 days.
pub const MAX_MINUTES: u32 = 7 * 24 * 60;
/// The default look-back.
pub const DEFAULT_MINUTES: u32 = 60;

/// What an endpoint accepts.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// `None`: the endpoint takes no `limit`.
    pub limit: Option<(u32, u32)>,
}

impl Spec {
    /// `minutes` only.
    pub const MINUTES: Self = Self { limit: None };

    /// `minutes` and `limit` (default, maximum).
    pub const fn with_limit(default: u32, max: u32) -> Self {
        Self {
            limit: Some((default, max)),
        }
    }
}

/// Validated parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub minutes: u32,
    /// 0 when the endpoint takes no limit.
    pub limit: u32,
}

/// A refused parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct ParamError {
    pub param: String,
    pub message: String,
}

fn refuse(param: &str, message: impl Into<String>) -> ParamError {
    ParamError {
        param: param.to_string(),
        message: message.into(),
    }
}

fn bounded(param: &str, value: &str, max: u32) -> Result<u32, ParamError> {
    match value.trim().parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(refuse(
            param,
            format!("must be a whole number between 1 and {max}, got {value:?}"),
        )),
    }
}

/// Parses `pairs` (the query string) for an endpoint accepting `spec`.
pub fn parse(pairs: &[(String, String)], spec: Spec) -> Result<Params, ParamError> {
    let mut minutes = None;
    let mut limit = None;
    for (k, v) in pairs {
        match (k.as_str(), spec.limit) {
            ("minutes", _) => {
                if minutes.replace(bounded(k, v, MAX_MINUTES)?).is_some() {
                    return Err(refuse(k, "given more than once"));
                }
            }
            ("limit", Some((_, max))) => {
                if limit.replace(bounded(k, v, max)?).is_some() {
                    return Err(refuse(k, "given more than once"));
                }
            }
            _ => {
                let known = if spec.limit.is_some() {
                    "`minutes` and `limit`"
                } else {
                    "`minutes`"
                };
                return Err(refuse(
                    k,
                    format!("unknown parameter; this endpoint takes {known}"),
                ));
            }
        }
    }
    Ok(Params {
        minutes: minutes.unwrap_or(DEFAULT_MINUTES),
        limit: limit.or(spec.limit.map(|(d, _)| d)).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_values() {
        let spec = Spec::with_limit(20, 100);
        assert_eq!(
            parse(&[], spec),
            Ok(Params {
                minutes: 60,
                limit: 20
            })
        );
        assert_eq!(
            parse(&q(&[("minutes", "15"), ("limit", "100")]), spec),
            Ok(Params {
                minutes: 15,
                limit: 100
            })
        );
        assert_eq!(
            parse(&q(&[("minutes", "10080")]), Spec::MINUTES),
            Ok(Params {
                minutes: 10080,
                limit: 0
            })
        );
    }

    #[test]
    fn bad_values_name_the_parameter() {
        let spec = Spec::with_limit(20, 100);
        for (pairs, param) in [
            (q(&[("minutes", "0")]), "minutes"),
            (q(&[("minutes", "10081")]), "minutes"),
            (q(&[("minutes", "-5")]), "minutes"),
            (q(&[("minutes", "1h")]), "minutes"),
            (q(&[("minutes", "")]), "minutes"),
            (q(&[("limit", "101")]), "limit"),
            (q(&[("limit", "0")]), "limit"),
            (q(&[("limit", "5"), ("limit", "6")]), "limit"),
            (q(&[("project", "other")]), "project"),
        ] {
            let e = parse(&pairs, spec).unwrap_err();
            assert_eq!(e.param, param, "{pairs:?}: {e}");
        }
        // An endpoint without `limit` refuses it and says what it takes.
        let e = parse(&q(&[("limit", "5")]), Spec::MINUTES).unwrap_err();
        assert_eq!(e.param, "limit");
        assert!(e.message.contains("`minutes`"), "{e}");
    }
}
