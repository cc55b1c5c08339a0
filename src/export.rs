//! `flywheel export`: an operator tool that reads the store directly (`[store]`: ClickHouse
//! with the `[clickhouse]` config, or the DuckDB file, opened read-only) and writes a dataset to
//! a file or stdout, with a progress bar on stderr and the
//! export report at the end. Same parameters and code as `GET /v1/datasets/export`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bytes::Bytes;
use flywheel_datasets::{DatasetError, ExportOptions, ExportReport, Output, Shape};
use flywheel_store::AccessMode;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Flags of `flywheel export`; each filter is the API parameter of the same name.
#[derive(clap::Args)]
pub struct ExportArgs {
    /// Project to export (required).
    #[arg(long)]
    project: String,
    /// sft | preference | eval (default sft).
    #[arg(long)]
    shape: Option<String>,
    /// jsonl | parquet (default jsonl).
    #[arg(long)]
    format: Option<String>,
    /// Write to this file (default stdout). Written to FILE.partial, renamed when complete.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Calls from this time (YYYY-MM-DD or RFC 3339), inclusive.
    #[arg(long)]
    from: Option<String>,
    /// Calls before this time, exclusive.
    #[arg(long)]
    to: Option<String>,
    /// Model (repeat or comma-separate for several).
    #[arg(long)]
    model: Vec<String>,
    /// Only calls with feedback of this name...
    #[arg(long)]
    feedback: Option<String>,
    /// ...with this value (true, false or a number)...
    #[arg(long)]
    feedback_value: Option<String>,
    /// ...or a score of at least this...
    #[arg(long)]
    feedback_min: Option<String>,
    /// ...and / or at most this...
    #[arg(long)]
    feedback_max: Option<String>,
    /// ...or this label.
    #[arg(long)]
    feedback_label: Option<String>,
    /// Only calls with a signal of this type (e.g. edit, copy, custom:<name>).
    #[arg(long)]
    signal: Option<String>,
    /// Only calls of this conversation.
    #[arg(long)]
    conversation: Option<String>,
    /// Export without PII redaction.
    #[arg(long)]
    no_redact: bool,
    /// Keep exact duplicates.
    #[arg(long)]
    no_dedup: bool,
    /// At most this many records.
    #[arg(long)]
    limit: Option<String>,
    /// preference: regenerate,feedback,edit (default all).
    #[arg(long)]
    pair_sources: Option<String>,
    /// preference: feedback name rating answers (default thumbs).
    #[arg(long)]
    pair_feedback: Option<String>,
    /// preference: a score at least this is positive (default 1).
    #[arg(long)]
    positive_min: Option<String>,
    /// preference: a score at most this is negative (default 0).
    #[arg(long)]
    negative_max: Option<String>,
    /// Calls per store query.
    #[arg(long, default_value_t = 2000)]
    page_size: u64,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

impl ExportArgs {
    /// The flags as API parameters, so both parse (and fail) the same way.
    fn params(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        let optional = [
            ("shape", &self.shape),
            ("format", &self.format),
            ("from", &self.from),
            ("to", &self.to),
            ("feedback", &self.feedback),
            ("feedback_value", &self.feedback_value),
            ("feedback_min", &self.feedback_min),
            ("feedback_max", &self.feedback_max),
            ("feedback_label", &self.feedback_label),
            ("signal", &self.signal),
            ("conversation", &self.conversation),
            ("limit", &self.limit),
            ("pair_sources", &self.pair_sources),
            ("pair_feedback", &self.pair_feedback),
            ("positive_min", &self.positive_min),
            ("negative_max", &self.negative_max),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                p.push((name, v.clone()));
            }
        }
        p.extend(self.model.iter().map(|m| ("model", m.clone())));
        if self.no_redact {
            p.push(("redact", "false".into()));
        }
        if self.no_dedup {
            p.push(("dedup", "false".into()));
        }
        p
    }
}

/// Writes to a file or stdout and moves the progress bar.
struct CliOutput {
    writer: Box<dyn Write + Send>,
    bar: ProgressBar,
}

impl Output for CliOutput {
    async fn write(&mut self, chunk: Bytes) -> Result<(), DatasetError> {
        self.writer.write_all(&chunk)?;
        Ok(())
    }

    fn progress(&mut self, calls_read: u64) {
        self.bar.set_position(calls_read);
    }
}

fn partial(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

pub async fn run(config: &crate::config::FlywheelConfig, args: ExportArgs) -> anyhow::Result<()> {
    if args.page_size == 0 {
        anyhow::bail!("--page-size must be at least 1");
    }
    let req = flywheel_datasets::parse(&args.project, args.params()).map_err(|e| {
        // Parameter names are the flags without `--` and with `_`.
        anyhow::anyhow!("--{}: {}", e.param.replace('_', "-"), e.message)
    })?;
    let store = flywheel_store::open(&config.store, &config.clickhouse, AccessMode::ReadOnly)
        .context("cannot open the store")?;
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else if req.shape == Shape::Preference {
        ProgressBar::new_spinner()
    } else {
        let total = flywheel_datasets::query::count_calls(store.as_ref(), &req)
            .await
            .context("cannot count the calls to export")?;
        ProgressBar::new(total)
    };
    bar.set_draw_target(if args.quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    });
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:40} {human_pos}/{human_len} calls, eta {eta}",
    ) {
        bar.set_style(style);
    }
    let writer: Box<dyn Write + Send> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(partial(path))
                .with_context(|| format!("cannot create {}", partial(path).display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let mut out = CliOutput { writer, bar };
    let options = ExportOptions {
        page_size: args.page_size,
    };
    let report = flywheel_datasets::export(store.as_ref(), &req, options, &mut out)
        .await
        .context("export failed")?;
    out.writer.flush().context("cannot write the output")?;
    drop(out.writer);
    out.bar.finish_and_clear();
    if let Some(path) = &args.output {
        std::fs::rename(partial(path), path)
            .with_context(|| format!("cannot rename to {}", path.display()))?;
    }
    eprintln!("{}", summary(&report));
    Ok(())
}

/// The report as `key=value` pairs on one line.
fn summary(r: &ExportReport) -> String {
    let mut s = format!(
        "export: rows_written={} calls_read={} duplicates_dropped={} skipped_empty={}",
        r.rows_written, r.calls_read, r.duplicates_dropped, r.skipped_empty
    );
    for (kind, n) in r.redactions.by_kind() {
        s.push_str(&format!(" redacted_{kind}={n}"));
    }
    if r.pairs != Default::default() {
        s.push_str(&format!(
            " pairs_regenerate={} pairs_feedback={} pairs_edit={}",
            r.pairs.regenerate, r.pairs.feedback, r.pairs.edit
        ));
    }
    s
}
