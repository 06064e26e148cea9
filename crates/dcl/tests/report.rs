//! `dcl report`: a page comparing a Split-MNIST `er` run and a naive one, opened in headless
//! Chromium (installed by scripts/setup.sh) without errors, with its plots.

use std::path::Path;
use std::process::Command;

mod common;
use common::{dcl_command, stderr, SplitMnist};

fn split_mnist(agent: &str, seed: &str, results: &Path) {
    let output = SplitMnist {
        agent,
        agent_config: if agent == "er" { "{'buffer_size': 200}" } else { "{}" },
        epochs: "1",
        seed,
        train_samples: "2000",
        test_samples: "500",
        ..SplitMnist::default()
    }
    .command(results)
    .output()
    .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn a_report_compares_runs_and_opens_in_a_browser_without_errors() {
    let root = tempfile::tempdir().unwrap();
    let runs = [("er", "0"), ("er", "1"), ("base", "0")].map(|(agent, seed)| {
        let dir = root.path().join(format!("{agent}-{seed}"));
        split_mnist(agent, seed, &dir);
        dir
    });
    let report = root.path().join("report");
    let output = dcl_command()
        .arg("report")
        .args(&runs)
        .arg("-o")
        .arg(&report)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let page = std::fs::read_to_string(report.join("index.html")).unwrap();
    // Two groups (the er seeds together), each with its matrix, task curves and throughput,
    // er also with its rehearsal timings.
    assert!(page.contains("3 run(s) in 2 group(s)"), "{page}");
    assert_eq!(page.matches("<svg").count(), 7);
    assert!(page.contains(" ± "), "the er group is shown as mean ± std");
    let plots: Vec<String> = std::fs::read_dir(report.join("plots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(plots.len(), 14, "every plot as SVG and PNG: {plots:?}");

    // Headless Chromium: the page loads, logs no error, and its DOM holds every plot.
    let chromium = Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg("--dump-dom")
        .arg(format!("file://{}", report.join("index.html").display()))
        .output()
        .expect("chromium runs (scripts/setup.sh installs it)");
    assert!(
        chromium.status.success(),
        "{}",
        String::from_utf8_lossy(&chromium.stderr)
    );
    let log = String::from_utf8_lossy(&chromium.stderr);
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    let dom = String::from_utf8_lossy(&chromium.stdout);
    assert_eq!(dom.matches("<svg").count(), 7, "plots in the rendered page");
    assert!(dom.contains("accuracy matrix (top-1 %)"));
}
