//! Checks a `/metrics` answer against the metric catalogue, docs/metrics.md: the Prometheus
//! text format parsed family by family, then every family held to its catalogue row (name,
//! type, label names, HELP, histogram buckets), and `promtool check metrics` when installed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::process::{Command, Stdio};

/// A family as the catalogue lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogueRow {
    /// `counter`, `gauge` or `histogram`.
    pub kind: String,
    /// Label names.
    pub labels: BTreeSet<String>,
    /// The `# HELP` text.
    pub help: String,
    /// A histogram's bucket bounds as written in the catalogue (e.g. `0.001`).
    pub buckets: Vec<f64>,
}

/// docs/metrics.md, read from the repository.
pub fn catalogue_text() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md");
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("reading {path}: {error}"))
}

/// The catalogue's families ("Families" and "Histogram buckets" tables), by name.
pub fn catalogue(markdown: &str) -> BTreeMap<String, CatalogueRow> {
    let mut rows = BTreeMap::new();
    let mut buckets = BTreeMap::new();
    let mut section = "";
    for line in markdown.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            section = heading.trim();
            continue;
        }
        if !line.starts_with("| `chronicle_") {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let name = cells[0].trim_matches('`').to_owned();
        match section {
            "Families" => {
                let labels = cells[2]
                    .split(',')
                    .map(|label| label.trim().trim_matches('`'))
                    .filter(|label| !label.is_empty())
                    .map(str::to_owned)
                    .collect();
                rows.insert(
                    name,
                    CatalogueRow {
                        kind: cells[1].to_owned(),
                        labels,
                        help: cells[3].to_owned(),
                        buckets: Vec::new(),
                    },
                );
            }
            "Histogram buckets (seconds)" => {
                let bounds: Vec<f64> = cells[1]
                    .split(',')
                    .map(|bound| {
                        bound
                            .trim()
                            .parse()
                            .unwrap_or_else(|_| panic!("bucket {bound:?} of {name}"))
                    })
                    .collect();
                buckets.insert(name, bounds);
            }
            _ => {}
        }
    }
    for (name, bounds) in buckets {
        match rows.get_mut(&name) {
            Some(row) => row.buckets = bounds,
            None => panic!("buckets for {name}, which is not in the Families table"),
        }
    }
    rows
}

/// A family as a scrape exposes it.
#[derive(Debug, Default, Clone)]
pub struct ExposedFamily {
    /// `# HELP` text, if any.
    pub help: Option<String>,
    /// `# TYPE`, if any.
    pub kind: Option<String>,
    /// Label names seen on its samples (`le` excluded).
    pub labels: BTreeSet<String>,
    /// `le` values seen on its `_bucket` samples.
    pub bounds: BTreeSet<String>,
    /// Samples, as (sample name, labels, value).
    pub samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

/// Parses the text exposition format into families, or says why it cannot.
///
/// # Errors
///
/// A malformed line, or a sample before its family's `# TYPE`.
pub fn parse(text: &str) -> Result<BTreeMap<String, ExposedFamily>, String> {
    let mut families: BTreeMap<String, ExposedFamily> = BTreeMap::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            families.entry(name.to_owned()).or_default().help = Some(help.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| format!("TYPE without a type: {line}"))?;
            families.entry(name.to_owned()).or_default().kind = Some(kind.to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, labels, value) = sample(line)?;
        let family = families
            .keys()
            .filter(|family| {
                name == **family
                    || ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| name.strip_suffix(suffix) == Some(family.as_str()))
            })
            .max_by_key(|family| family.len())
            .cloned()
            .ok_or_else(|| format!("sample of no declared family: {line}"))?;
        let entry = families.get_mut(&family).ok_or("family vanished")?;
        if entry.kind.is_none() {
            return Err(format!("sample before its # TYPE: {line}"));
        }
        for (label, label_value) in &labels {
            if label == "le" {
                entry.bounds.insert(label_value.clone());
            } else {
                entry.labels.insert(label.clone());
            }
        }
        entry.samples.push((name, labels, value));
    }
    Ok(families)
}

type Sample = (String, BTreeMap<String, String>, f64);

/// One sample line: `name{label="value",...} value [timestamp]`.
fn sample(line: &str) -> Result<Sample, String> {
    let bad = || format!("malformed sample: {line}");
    let name_end = line.find(['{', ' ']).ok_or_else(bad)?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(bad());
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let mut label = String::new();
        loop {
            let (index, c) = chars.next().ok_or_else(bad)?;
            match c {
                '}' if label.is_empty() => {
                    rest = &inner[index + 1..];
                    break;
                }
                ',' if label.is_empty() => {}
                '=' => {
                    if chars.next().map(|(_, c)| c) != Some('"') {
                        return Err(bad());
                    }
                    let mut value = String::new();
                    loop {
                        let (_, c) = chars.next().ok_or_else(bad)?;
                        match c {
                            '"' => break,
                            '\\' => match chars.next().ok_or_else(bad)?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut label), value);
                }
                c if c.is_ascii_alphanumeric() || c == '_' => label.push(c),
                _ => return Err(bad()),
            }
        }
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or_else(bad)?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().map_err(|_| bad())?,
    };
    Ok((name.to_owned(), labels, value))
}

/// Every way `text` (a `/metrics` answer) departs from the catalogue `markdown`: a family
/// without HELP or TYPE, one without the `chronicle_` prefix, one the catalogue does not list,
/// or one whose type, label names, HELP or buckets differ from its row. Empty when it matches.
pub fn problems(text: &str, markdown: &str) -> Vec<String> {
    let families = match parse(text) {
        Ok(families) => families,
        Err(error) => return vec![error],
    };
    let catalogue = catalogue(markdown);
    let mut problems = Vec::new();
    for (name, family) in &families {
        let Some(kind) = &family.kind else {
            problems.push(format!("{name}: no # TYPE"));
            continue;
        };
        if family.help.as_deref().is_none_or(str::is_empty) {
            problems.push(format!("{name}: no # HELP"));
        }
        if !name.starts_with("chronicle_") {
            problems.push(format!("{name}: not prefixed with chronicle_"));
            continue;
        }
        let Some(row) = catalogue.get(name) else {
            problems.push(format!("{name}: not in docs/metrics.md"));
            continue;
        };
        if *kind != row.kind {
            problems.push(format!("{name}: type {kind}, catalogue {}", row.kind));
        }
        if family.labels != row.labels {
            problems.push(format!(
                "{name}: labels {:?}, catalogue {:?}",
                family.labels, row.labels
            ));
        }
        if family.help.as_deref() != Some(row.help.as_str()) {
            problems.push(format!(
                "{name}: HELP {:?}, catalogue {:?}",
                family.help, row.help
            ));
        }
        if row.kind == "histogram" {
            let exposed: BTreeSet<String> = family
                .bounds
                .iter()
                .filter(|bound| *bound != "+Inf")
                .map(|bound| {
                    bound
                        .parse::<f64>()
                        .map_or(bound.clone(), |b| b.to_string())
                })
                .collect();
            let wanted: BTreeSet<String> = row.buckets.iter().map(f64::to_string).collect();
            if !family.bounds.is_empty() && exposed != wanted {
                problems.push(format!("{name}: buckets {exposed:?}, catalogue {wanted:?}"));
            }
        }
    }
    problems
}

/// What `promtool check metrics` says of `text`: `None` when promtool is not installed, else
/// its findings (empty when clean).
pub fn promtool(text: &str) -> Option<String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .unwrap_or_else(|error| panic!("writing to promtool: {error}"));
    }
    let output = child
        .wait_with_output()
        .unwrap_or_else(|error| panic!("running promtool: {error}"));
    let mut said = String::from_utf8_lossy(&output.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&output.stderr));
    if !output.status.success() && said.trim().is_empty() {
        said = format!("promtool exited with {}", output.status);
    }
    Some(said.trim().to_owned())
}

/// Asserts that `text` matches the catalogue and that promtool (when installed) finds nothing.
///
/// # Panics
///
/// When it does not.
pub fn assert_catalogued(text: &str) {
    let problems = problems(text, &catalogue_text());
    assert!(problems.is_empty(), "{problems:#?}\n\n{text}");
    match promtool(text) {
        Some(findings) => assert!(findings.is_empty(), "promtool: {findings}\n\n{text}"),
        None => eprintln!("promtool not installed: checked with the Rust parser only"),
    }
}

/// The value of the sample `name` whose labels include every pair of `labels`, summed over
/// the series that match.
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let families = parse(text).ok()?;
    let mut found = None;
    for family in families.values() {
        for (sample, sample_labels, value) in &family.samples {
            if sample == name
                && labels.iter().all(|(label, wanted)| {
                    sample_labels.get(*label).map(String::as_str) == Some(*wanted)
                })
            {
                *found.get_or_insert(0.0) += value;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_has_every_family_with_a_type_and_help() {
        let rows = catalogue(&catalogue_text());
        assert!(rows.len() >= 20, "{rows:?}");
        let requests = &rows["chronicle_http_requests_total"];
        assert_eq!(requests.kind, "counter");
        assert!(requests.labels.contains("route"));
        assert_eq!(rows["chronicle_consistency_wait_seconds"].buckets.len(), 12);
        assert!(rows["chronicle_relay_published_total"].labels.is_empty());
    }

    #[test]
    fn the_code_names_every_family_as_the_catalogue_does() {
        use service_kit::metric_names::FAMILIES;
        let rows = catalogue(&catalogue_text());
        for family in FAMILIES {
            let row = rows
                .get(family.name)
                .unwrap_or_else(|| panic!("{} is not in docs/metrics.md", family.name));
            assert_eq!(row.kind, family.kind.as_str(), "{}", family.name);
            let labels: BTreeSet<String> = family
                .labels
                .iter()
                .map(|label| (*label).to_owned())
                .collect();
            assert_eq!(row.labels, labels, "{}", family.name);
            assert_eq!(row.help, family.help, "{}", family.name);
            assert_eq!(row.buckets, family.buckets, "{}", family.name);
        }
        for name in rows.keys() {
            assert!(
                FAMILIES.iter().any(|family| family.name == name),
                "{name} is catalogued but not in service_kit::metric_names"
            );
        }
    }

    #[test]
    fn a_departure_from_the_catalogue_is_named() {
        let markdown = catalogue_text();
        let text = "# HELP http_requests_total x\n# TYPE http_requests_total counter\n\
                    http_requests_total{route=\"/a/{id}\"} 1\n\
                    # TYPE chronicle_relay_published_total counter\n\
                    chronicle_relay_published_total 3\n\
                    # HELP chronicle_commands_total Commands handled, by aggregate type and outcome.\n\
                    # TYPE chronicle_commands_total gauge\n\
                    chronicle_commands_total{outcome=\"ok\"} 1\n";
        let found = problems(text, &markdown);
        assert!(
            found
                .iter()
                .any(|p| p.contains("http_requests_total: not prefixed")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.contains("chronicle_relay_published_total: no # HELP")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.contains("chronicle_commands_total: type gauge")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.contains("chronicle_commands_total: labels")),
            "{found:?}"
        );
        assert_eq!(
            value(text, "http_requests_total", &[("route", "/a/{id}")]),
            Some(1.0)
        );
    }
}
