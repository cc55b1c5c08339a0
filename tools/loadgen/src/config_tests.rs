use super::*;

fn sample(name: &str) -> String {
    let path = format!("{}/scenarios/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn every_sample_scenario_parses_and_validates() {
    let dir = format!("{}/scenarios", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        Scenario::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        n += 1;
    }
    assert!(n >= 3, "sample scenarios found: {n}");
}

#[test]
fn the_reference_file_is_exactly_the_defaults() {
    let reference = Scenario::from_toml(&sample("reference.toml")).unwrap();
    assert_eq!(reference, Scenario::default());
    Scenario::default().validate().unwrap();
}

#[test]
fn the_incident_sample_has_one_incident_of_each_kind() {
    use crate::incident::IncidentKind as K;
    let s = Scenario::from_toml(&sample("incidents.toml")).unwrap();
    let kinds: Vec<K> = s.incidents.iter().map(|i| i.kind).collect();
    assert_eq!(
        kinds,
        [
            K::TtftRegression,
            K::ErrorBurst,
            K::ThumbsDownSurge,
            K::RegenerateSurge,
            K::CostSpike,
            K::Overload
        ]
    );
    assert_eq!(s.incidents[5].start, Duration::from_secs(630 * 60));
}

fn error_of(text: &str) -> String {
    Scenario::from_toml(text).unwrap_err().to_string()
}

#[test]
fn errors_name_the_field_at_fault() {
    let e = error_of("rate = 5.0\nrte = 3\n");
    assert!(e.contains("rte") && e.contains("line 2"), "{e}");
    let e = error_of("duration = \"5 fortnights\"");
    assert!(e.contains("duration") && e.contains("unknown unit"), "{e}");
    assert!(error_of("rate = 0.0").contains("`rate`"));
    assert!(error_of("[feedback]\nthumbs_rate = 1.5").contains("`feedback.thumbs_rate`"));
    let e = error_of(
        "[[model]]\nname = \"m\"\nprovider = \"p\"\nweight = 1.0\n\
         ttft_ms = { mean = 1.0, sigma = 0.1 }\ntpot_ms = { mean = -1.0, sigma = 0.1 }\n\
         input_tokens = { mean = 1.0, sigma = 0.1 }\noutput_tokens = { mean = 1.0, sigma = 0.1 }\n",
    );
    assert!(e.contains("`model[0].tpot_ms.mean`"), "{e}");
}

#[test]
fn incident_errors_name_the_incident_and_field() {
    let incident = |body: &str| format!("[[incident]]\nstart = \"1m\"\nduration = \"1m\"\n{body}");
    let e = error_of(&incident("kind = \"ttft_regression\"\nmultiplier = 2.0"));
    assert!(e.contains("`incident[0].model` is required"), "{e}");
    let e = error_of(&incident(
        "kind = \"error_burst\"\nprovider = \"openai\"\nerror_ratio = 0.5\nmodel = \"gpt-4o\"",
    ));
    assert!(e.contains("`incident[0].model` does not apply"), "{e}");
    let e = error_of(&incident(
        "kind = \"ttft_regression\"\nmodel = \"gpt-5\"\nmultiplier = 2.0",
    ));
    assert!(e.contains("not one of the scenario's models"), "{e}");
    let e = error_of(&incident(
        "kind = \"error_burst\"\nprovider = \"openai\"\nerror_ratio = 2.0",
    ));
    assert!(e.contains("`incident[0].error_ratio`"), "{e}");
    let e = error_of(&incident("kind = \"meltdown\""));
    assert!(e.contains("meltdown"), "{e}");
    let e = error_of(
        "duration = \"10m\"\n[[incident]]\nkind = \"regenerate_surge\"\nratio = 0.5\n\
         start = \"10m\"\nduration = \"1m\"",
    );
    assert!(
        e.contains("`incident[0].start` is at or after the end"),
        "{e}"
    );
}

#[test]
fn durations() {
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
    assert_eq!(
        parse_duration("7d").unwrap(),
        Duration::from_secs(7 * 86_400)
    );
    assert!(parse_duration("m").is_err());
    assert!(parse_duration("3w").is_err());
    let s = Scenario::from_toml("duration = 120").unwrap();
    assert_eq!(s.duration, Duration::from_secs(120));
}
