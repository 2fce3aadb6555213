//! `lipa` as a child process: `Demo` (the demo on free ports, with what it printed) and `start`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct Demo {
    pub dir: PathBuf,
    pub printed: Vec<String>,
    child: Child,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Demo {
    /// Starts `lipa demo` (with `--auto` if asked) in a fresh data directory and reads its
    /// banner up to "Press Ctrl-C".
    pub fn start(auto: bool) -> Self {
        Self::start_with(auto, &[], &[])
    }

    /// [`Demo::start`] with more arguments and environment variables.
    pub fn start_with(auto: bool, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("lipa-demo-{}", lipa_gateway::ids::random_hex(6)));
        let mut command = Command::new(env!("CARGO_BIN_EXE_lipa"));
        command.envs(envs.iter().copied());
        command.args(["demo", "--shop-port", "0", "--gateway-port", "0", "--sim-port", "0", "--data-dir"]).arg(&dir);
        if auto {
            command.arg("--auto");
        }
        command.args(args);
        let mut child = command.env("LIPA_LOG", "warn").stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let mut printed = Vec::new();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let done = line.starts_with("Press Ctrl-C");
            printed.push(line);
            if done {
                break;
            }
        }
        // Keep reading what it prints later: a closed pipe would stop it at its next line.
        std::thread::spawn(move || lines.for_each(drop));
        Self { dir, printed, child }
    }

    /// The first word after `label` on the banner line that starts with it.
    pub fn value(&self, label: &str) -> String {
        self.printed
            .iter()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(|rest| rest.split_whitespace().next().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no {label:?} line in {:#?}", self.printed))
    }
}

/// Starts `lipa` with `args` (and `envs` over a nonexistent config file) and waits for the
/// line starting with `ready`; returns the process and the URL on that line (empty if none).
pub fn start(args: &[&str], envs: &[(&str, &str)], ready: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lipa"))
        .args(args)
        .env("LIPA_LOG", "warn")
        .env("LIPA_CONFIG", "/nonexistent/lipa.toml")
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with(ready) {
            let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_default();
            let url = url.trim_end_matches(';').to_owned();
            // Keep reading what it prints later: a closed pipe would stop it at its next line.
            std::thread::spawn(move || lines.for_each(drop));
            return (child, url);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("lipa {args:?} exited before printing {ready:?}");
}
