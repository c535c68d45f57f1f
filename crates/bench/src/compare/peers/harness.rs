//! The Java harness of the peer (`peers/parallel-consumer/`, a Maven project): found, built on
//! first use, and started as `java -cp <jar>:<its dependencies> kafkaesque.peers.Harness`.
//!
//! The build is `mvn package dependency:build-classpath`, as `scripts/broker install` resolves
//! the broker's jars: the jars stay in `~/.m2` and the classpath file lists them. Offline (`-o`)
//! first, which takes a few seconds once everything is resolved; online only when that fails (a
//! fresh machine: about 15 s from Maven Central). Nothing is rebuilt while the jar is newer than
//! the pom and every source file.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use tokio::process::Command;
use tokio::sync::OnceCell;

/// The Maven project, relative to the workspace root.
const PROJECT: &str = "peers/parallel-consumer";

/// The built harness: how to start a JVM that runs it.
#[derive(Debug, Clone)]
pub struct Harness {
    java: PathBuf,
    classpath: String,
}

impl Harness {
    /// The harness, built if its jar is missing or older than its sources; once per process.
    ///
    /// # Errors
    /// When Java or Maven is missing (the message says how to install them), or the build fails
    /// (with Maven's output).
    pub async fn get() -> Result<&'static Harness> {
        static BUILT: OnceCell<Harness> = OnceCell::const_new();
        BUILT.get_or_try_init(build).await
    }

    /// A command that runs the harness with `args`.
    pub fn command(&self, args: &[String]) -> Command {
        let mut c = Command::new(&self.java);
        c.arg("-cp").arg(&self.classpath);
        c.arg("kafkaesque.peers.Harness").args(args);
        c
    }
}

/// `KAFKAESQUE_PEERS_DIR`, or `peers/parallel-consumer` of the workspace this crate was built in.
fn project_dir() -> PathBuf {
    std::env::var_os("KAFKAESQUE_PEERS_DIR").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(PROJECT)
        },
        PathBuf::from,
    )
}

/// `KAFKAESQUE_JAVA`, else the java `scripts/broker install` found, else `java` on the `PATH`.
fn java() -> Result<PathBuf> {
    if let Some(j) = std::env::var_os("KAFKAESQUE_JAVA") {
        return Ok(j.into());
    }
    let home = std::env::var_os("KAFKAESQUE_HOME").map_or_else(
        || Path::new(&std::env::var_os("HOME").unwrap_or_default()).join(".kafkaesque"),
        PathBuf::from,
    );
    if let Ok(j) = std::fs::read_to_string(home.join("kafka-4.1.1/java")) {
        let j = PathBuf::from(j.trim());
        if j.exists() {
            return Ok(j);
        }
    }
    which("java").context(
        "no Java found for the peer's harness: `scripts/broker install` installs Java 17 and \
         Maven (or set KAFKAESQUE_JAVA)",
    )
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

async fn build() -> Result<Harness> {
    let dir = project_dir();
    let pom = dir.join("pom.xml");
    anyhow::ensure!(
        pom.is_file(),
        "the peer's harness is not at {} (set KAFKAESQUE_PEERS_DIR)",
        dir.display()
    );
    let java = java()?;
    let target = dir.join("target");
    let jar = target.join("kafkaesque-peers-parallel-consumer-0.1.0.jar");
    let classpath_file = target.join("classpath");
    if !fresh(&dir, &jar, &classpath_file)? {
        let mvn = which("mvn").context(
            "Maven (mvn) is missing, needed to build the peer's harness: `scripts/broker \
             install` installs Java 17 and Maven",
        )?;
        let java_home = java
            .canonicalize()
            .ok()
            .and_then(|j| Some(j.parent()?.parent()?.to_owned()));
        let run = |offline: bool| {
            let mut c = Command::new(&mvn);
            c.args(["-q", "-B"]).args(offline.then_some("-o")).arg("-f");
            c.arg(&pom).args([
                "package",
                "dependency:build-classpath",
                "-Dmdep.outputFile=target/classpath",
            ]);
            if let Some(home) = &java_home {
                c.env("JAVA_HOME", home);
            }
            c.stdin(Stdio::null()).kill_on_drop(true).output()
        };
        let offline = run(true).await.context("running mvn")?;
        if !offline.status.success() {
            eprintln!("  building the peer's harness (Maven Central, once)…");
            let online = run(false).await.context("running mvn")?;
            if !online.status.success() {
                bail!(
                    "Maven could not build {}:\n{}{}",
                    pom.display(),
                    String::from_utf8_lossy(&online.stdout),
                    String::from_utf8_lossy(&online.stderr)
                );
            }
        }
    }
    let deps = std::fs::read_to_string(&classpath_file)
        .with_context(|| format!("reading {}", classpath_file.display()))?;
    Ok(Harness {
        java,
        classpath: format!("{}:{}", jar.display(), deps.trim()),
    })
}

/// Whether the jar and the classpath exist, the jar is newer than the pom and every source, and
/// every jar the classpath names is still there.
fn fresh(dir: &Path, jar: &Path, classpath: &Path) -> Result<bool> {
    let (Ok(built), Ok(deps)) = (modified(jar), std::fs::read_to_string(classpath)) else {
        return Ok(false);
    };
    if !deps.trim().split(':').all(|j| Path::new(j).is_file()) {
        return Ok(false);
    }
    let mut sources = vec![dir.join("pom.xml")];
    let mut stack = vec![dir.join("src")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                sources.push(path);
            }
        }
    }
    for s in sources {
        if modified(&s)? > built {
            return Ok(false);
        }
    }
    Ok(true)
}

fn modified(path: &Path) -> Result<SystemTime> {
    Ok(std::fs::metadata(path)?.modified()?)
}
