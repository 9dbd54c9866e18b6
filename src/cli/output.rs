//! What commands print: the result on stdout, and one line per stored signature or
//! attestation on stderr.

use std::io::Write;

use anyhow::{Context, Result};
use gantry::report::BuildReport;
use gantry::sign::Attachment;

/// Stdout was closed before the result was all written (`gantry … | head -1`).
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed")]
pub struct StdoutClosed;

/// Writes a command's result to stdout. A reader that has gone away is not an error of
/// ours: it ends the process quietly, where `println!` would panic.
pub fn print_result(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        other => other.context("writing to stdout"),
    }
}

/// What a build published, and a line per signature or attestation stored.
pub fn report_published(report: &BuildReport) {
    eprintln!(
        "gantry: published: {} blobs uploaded, {} already present, {} mounted, {} manifests, {} tags",
        report.publish.blobs_uploaded,
        report.publish.blobs_existing,
        report.publish.blobs_mounted,
        report.publish.manifests,
        report.publish.tags
    );
    for image in &report.images {
        report_attachments(&image.attachments);
    }
}

/// One line per signature or attestation stored.
pub fn report_attachments(attachments: &[Attachment]) {
    for a in attachments {
        eprintln!(
            "gantry: {} {} of {} stored as {} {}{}",
            a.kind,
            a.predicate_type
                .as_deref()
                .unwrap_or("(cosign simplesigning)"),
            a.subject,
            a.storage,
            a.digest,
            a.rekor_log_index
                .map(|i| format!(" (Rekor log index {i})"))
                .unwrap_or_default()
        );
    }
}
