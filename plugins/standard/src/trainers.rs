//! Stage II trainers: `in-process` (the engine's own trainer) and
//! `command`, which runs a user command (the official ReDiff DeepSpeed
//! script, say) on the round's dataset and waits for the checkpoint it
//! writes.
//!
//! The command is an argument list, not a shell line; each argument may
//! hold placeholders that are replaced by the round's paths: `{dataset}`,
//! `{images}`, `{checkpoint}` (the model to fine-tune), `{output}` (where
//! the trained checkpoint must go), `{work_dir}`, `{run_dir}`, `{log}` and
//! `{round}`. It runs in its own process group with its standard output
//! and error appended to the round's log. Ctrl-C and the timeout stop the
//! whole group (SIGTERM, then SIGKILL after a grace period). A non-zero
//! exit, a timeout or an output directory without a checkpoint is an
//! error with the exit status and the log's last lines.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rediff_api::trainer::{TrainJob, Trainer};
use rediff_api::{Error, Result};
use serde::Deserialize;

/// Lines of the log quoted in an error.
const TAIL_LINES: usize = 20;
/// Seconds between SIGTERM and SIGKILL when stopping a command.
const GRACE: Duration = Duration::from_secs(5);

/// Options of the `command` trainer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandOptions {
    /// Program and arguments, with `{placeholders}`.
    pub command: Vec<String>,
    /// Seconds the command may run (absent: no limit).
    #[serde(default)]
    pub timeout_s: Option<f64>,
    /// Working directory (default: the pipeline file's directory, else the current one).
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Extra environment variables (values may hold placeholders).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The file inside `{output}` whose presence marks a written
    /// checkpoint (default `config.json`).
    #[serde(default = "default_marker")]
    pub checkpoint_file: String,
}

fn default_marker() -> String {
    "config.json".into()
}

/// Runs a command per round.
#[derive(Debug, Clone)]
pub struct CommandTrainer {
    options: CommandOptions,
}

impl CommandTrainer {
    /// Checks the options.
    pub fn new(options: CommandOptions) -> std::result::Result<Self, String> {
        if options.command.is_empty() || options.command[0].trim().is_empty() {
            return Err("command needs at least a program, e.g. command = [\"bash\", \"train.sh\", \"{dataset}\"]".into());
        }
        if let Some(t) = options.timeout_s {
            if !(t > 0.0 && t.is_finite()) {
                return Err(format!("timeout_s must be positive, got {t}"));
            }
        }
        for arg in options.command.iter().chain(options.env.values()) {
            check_placeholders(arg)?;
        }
        Ok(Self { options })
    }

    /// The command line for `job`, placeholders replaced.
    pub fn argv(&self, job: &TrainJob) -> Vec<String> {
        self.options
            .command
            .iter()
            .map(|a| substitute(a, job))
            .collect()
    }
}

/// Placeholder names a command may use.
pub const PLACEHOLDERS: [&str; 8] = [
    "dataset",
    "images",
    "checkpoint",
    "output",
    "work_dir",
    "run_dir",
    "log",
    "round",
];

fn check_placeholders(arg: &str) -> std::result::Result<(), String> {
    let mut rest = arg;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            return Err(format!("unclosed `{{` in `{arg}`"));
        };
        let name = &rest[start + 1..start + len];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder `{{{name}}}` in `{arg}`; expected one of {}",
                PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        rest = &rest[start + len + 1..];
    }
    Ok(())
}

/// The job's paths by placeholder name (`dataset`, `images`, `checkpoint`,
/// `output`, `work_dir`, `run_dir`, `log`) and the round.
fn placeholders(job: &TrainJob) -> Vec<(&'static str, String)> {
    let p = |path: &Path| path.display().to_string();
    vec![
        ("dataset", p(&job.dataset)),
        ("images", p(&job.image_root)),
        ("checkpoint", p(&job.input_checkpoint)),
        ("output", p(&job.output_dir)),
        ("work_dir", p(&job.work_dir)),
        ("run_dir", p(&job.run_dir)),
        ("log", p(&job.log)),
        ("round", job.round.to_string()),
    ]
}

fn substitute(arg: &str, job: &TrainJob) -> String {
    let mut out = arg.to_string();
    for (name, value) in placeholders(job) {
        out = out.replace(&format!("{{{name}}}"), &value);
    }
    out
}

/// The engine's own trainer, registered as `in-process`: the engine runs
/// it itself, with the pipeline's synthesizers and optimiser.
#[derive(Debug, Default, Clone, Copy)]
pub struct InProcessTrainer;

impl Trainer for InProcessTrainer {
    fn in_process(&self) -> bool {
        true
    }

    fn train(&self, _job: &TrainJob) -> Result<()> {
        Err(Error::invalid(
            "the in-process trainer is run by the engine itself",
        ))
    }
}

impl Trainer for CommandTrainer {
    fn train(&self, job: &TrainJob) -> Result<()> {
        let argv = self.argv(job);
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&job.log)
            .map_err(|e| Error::io(&job.log, e))?;
        writeln!(log, "==> round {}: {}", job.round, argv.join(" "))
            .map_err(|e| Error::io(&job.log, e))?;
        let stdout = log.try_clone().map_err(|e| Error::io(&job.log, e))?;
        let stderr = log.try_clone().map_err(|e| Error::io(&job.log, e))?;
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr));
        if let Some(dir) = &self.options.cwd {
            cmd.current_dir(dir);
        }
        for (k, v) in &self.options.env {
            cmd.env(k, substitute(v, job));
        }
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let mut child = cmd.spawn().map_err(|e| {
            Error::invalid(format!("trainer command `{}` did not start: {e}", argv[0]))
        })?;
        let _ = writeln!(log, "==> pid {}", child.id());
        let started = Instant::now();
        let timeout = self.options.timeout_s.map(Duration::from_secs_f64);
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| Error::io(&job.log, e))? {
                break status;
            }
            if job.interrupt.load(Ordering::SeqCst) {
                stop_group(&mut child);
                let _ = writeln!(log, "==> stopped: interrupted");
                return Err(Error::Interrupted);
            }
            if timeout.is_some_and(|t| started.elapsed() >= t) {
                stop_group(&mut child);
                let _ = writeln!(log, "==> stopped: timed out");
                return Err(Error::invalid(format!(
                    "trainer command timed out after {:.0} s and was stopped (timeout_s); log {}:\n{}",
                    started.elapsed().as_secs_f64(),
                    job.log.display(),
                    log_tail(&job.log)
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let _ = writeln!(
            log,
            "==> exit {} after {:.1} s",
            describe(status),
            started.elapsed().as_secs_f64()
        );
        if !status.success() {
            return Err(Error::invalid(format!(
                "trainer command failed with {}; log {}:\n{}",
                describe(status),
                job.log.display(),
                log_tail(&job.log)
            )));
        }
        let marker = job.output_dir.join(&self.options.checkpoint_file);
        if !marker.is_file() {
            return Err(Error::invalid(format!(
                "trainer command exited 0 but wrote no checkpoint: {} is missing; log {}:\n{}",
                marker.display(),
                job.log.display(),
                log_tail(&job.log)
            )));
        }
        Ok(())
    }
}

fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("signal {sig}");
        }
    }
    status.to_string()
}

/// SIGTERM to the child's process group, SIGKILL after [`GRACE`].
fn stop_group(child: &mut Child) {
    #[cfg(unix)]
    {
        let pgid = child.id() as i32;
        // SAFETY: kill(2) with a negative pid signals the process group the
        // child leads (it was started with process_group(0)).
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
        let until = Instant::now() + GRACE;
        while Instant::now() < until {
            if let Ok(Some(_)) = child.try_wait() {
                // The leader is gone; make sure the rest of the group is too.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The last [`TAIL_LINES`] lines of `path` (the last 64 KiB at most).
pub fn log_tail(path: &Path) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return "(no log)".into();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(65536)));
    let mut text = String::new();
    let _ = f.read_to_string(&mut text);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    lines[start..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    fn job(dir: &Path) -> TrainJob {
        TrainJob {
            round: 2,
            dataset: dir.join("dataset.json"),
            image_root: dir.join("images"),
            input_checkpoint: dir.join("in"),
            output_dir: dir.join("out"),
            work_dir: dir.to_path_buf(),
            run_dir: dir.to_path_buf(),
            log: dir.join("trainer.log"),
            interrupt: Arc::new(AtomicBool::new(false)),
        }
    }

    fn trainer(command: &[&str], timeout_s: Option<f64>) -> CommandTrainer {
        CommandTrainer::new(CommandOptions {
            command: command.iter().map(|s| s.to_string()).collect(),
            timeout_s,
            cwd: None,
            env: BTreeMap::new(),
            checkpoint_file: default_marker(),
        })
        .unwrap()
    }

    #[test]
    fn placeholders_are_replaced_and_typos_listed() {
        let dir = Path::new("/r");
        let t = trainer(
            &["train.sh", "--data={dataset}", "{output}", "r{round}"],
            None,
        );
        assert_eq!(
            t.argv(&job(dir)),
            ["train.sh", "--data=/r/dataset.json", "/r/out", "r2"]
        );
        let err = CommandTrainer::new(CommandOptions {
            command: vec!["x".into(), "{outptu}".into()],
            timeout_s: None,
            cwd: None,
            env: BTreeMap::new(),
            checkpoint_file: default_marker(),
        })
        .unwrap_err();
        assert!(
            err.contains("unknown placeholder `{outptu}`") && err.contains("{output}"),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn success_failure_missing_checkpoint_and_timeout() {
        let tmp = tempfile::tempdir().unwrap();
        let j = job(tmp.path());
        let ok = trainer(
            &[
                "sh",
                "-c",
                "echo training {round}; mkdir -p {output} && printf ok > {output}/config.json",
            ],
            None,
        );
        ok.train(&j).unwrap();
        assert!(std::fs::read_to_string(&j.log)
            .unwrap()
            .contains("training 2"));
        let failing = trainer(&["sh", "-c", "echo 'CUDA out of memory' >&2; exit 3"], None);
        let err = failing.train(&j).unwrap_err().to_string();
        assert!(
            err.contains("exit code 3") && err.contains("CUDA out of memory"),
            "{err}"
        );
        std::fs::remove_dir_all(&j.output_dir).unwrap();
        let silent = trainer(&["true"], None);
        let err = silent.train(&j).unwrap_err().to_string();
        assert!(
            err.contains("wrote no checkpoint") && err.contains("config.json is missing"),
            "{err}"
        );
        let slow = trainer(&["sh", "-c", "echo started; sleep 30"], Some(0.5));
        let t = Instant::now();
        let err = slow.train(&j).unwrap_err().to_string();
        assert!(
            err.contains("timed out") && err.contains("started"),
            "{err}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the group was stopped"
        );
        // Ctrl-C: the run's interrupt flag stops the command's whole group.
        let flag = j.interrupt.clone();
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            flag.store(true, Ordering::SeqCst);
        });
        let t = Instant::now();
        let err = trainer(&["sh", "-c", "sleep 30"], None)
            .train(&j)
            .unwrap_err();
        stopper.join().unwrap();
        assert!(matches!(err, Error::Interrupted), "{err}");
        assert!(t.elapsed() < Duration::from_secs(10));
        assert!(std::fs::read_to_string(&j.log)
            .unwrap()
            .contains("stopped: interrupted"));
    }
}
