//! The Git source step: clone or update the build's checkout with the real `git`, as
//! Buildbot's `steps.Git` does, and record `got_revision`.

use std::path::Path;

use serde_json::Value;

use super::shell::{plain_shell, Capture};
use super::{LogWriter, RunningBuild, StepOutcome, StepRun};
use crate::config::build::{GitMethod, GitMode, GitStep, ShellOptions};
use crate::model::BuildResult;
use crate::process::{CommandLine, Outcome};

impl StepRun<'_> {
    pub async fn git(&self, step: &GitStep) -> Result<StepOutcome, String> {
        let build = self.build;
        let workdir = build.workdir(self.config).await?;
        let repourl = build.render_string(&step.repourl).await?;
        let stamp = build
            .sourcestamps
            .iter()
            .find(|ss| ss.codebase == step.codebase);
        let branch = match stamp.and_then(|ss| ss.branch.clone()) {
            Some(branch) => branch,
            None => build.render_string(&step.branch).await?,
        };
        let revision = stamp
            .filter(|_| !step.always_use_latest)
            .and_then(|ss| ss.revision.clone());
        let shell = plain_shell(step.env.clone(), Some(step.timeout), step.log_environ);
        let mut stdio = self.log("stdio", true).await?;
        let checkout = Checkout {
            run: self,
            shell: &shell,
            step,
            repourl: &repourl,
            branch: &branch,
        };

        let target = match step.mode {
            GitMode::Full(GitMethod::Copy) => build.builder_dir.join("source"),
            _ => workdir.clone(),
        };
        let mut ok = checkout
            .update(&mut stdio, &target, revision.as_deref())
            .await?;
        if !ok && step.clobber_on_failure {
            stdio
                .line('h', "checkout failed; clobbering and cloning again")
                .await
                .map_err(|e| e.to_string())?;
            remove(build, &target).await?;
            ok = checkout
                .update(&mut stdio, &target, revision.as_deref())
                .await?;
        }
        if ok && target != workdir {
            remove(build, &workdir).await?;
            // Relative to the builder directory, where it runs, as a remote worker needs.
            let relative = |path: &Path| {
                path.strip_prefix(&build.builder_dir)
                    .unwrap_or(path)
                    .display()
                    .to_string()
            };
            let copy = CommandLine::Argv(vec![
                "cp".into(),
                "-a".into(),
                relative(&target),
                relative(&workdir),
            ]);
            ok = checkout
                .git_ok(&mut stdio, copy, &build.builder_dir)
                .await?;
        }
        let got_revision = if ok {
            let rev = CommandLine::Argv(vec!["git".into(), "rev-parse".into(), "HEAD".into()]);
            let ran = self
                .run_in_log(
                    &mut stdio,
                    rev,
                    &shell,
                    &workdir,
                    Capture {
                        stdout: true,
                        ..Capture::default()
                    },
                )
                .await?;
            (ran.results == BuildResult::Success).then(|| ran.stdout.trim().to_string())
        } else {
            None
        };
        stdio.finish().await.map_err(|e| e.to_string())?;
        match got_revision {
            Some(rev) => {
                // With a codebase, Buildbot keeps one revision per codebase.
                let value = if step.codebase.is_empty() {
                    Value::String(rev)
                } else {
                    let mut by_codebase = build
                        .properties()
                        .get("got_revision")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    by_codebase.insert(step.codebase.clone(), Value::String(rev));
                    Value::Object(by_codebase)
                };
                build.set_property("got_revision", value, "Git");
                Ok(StepOutcome::of(BuildResult::Success))
            }
            None => Ok(StepOutcome::of(if build.worker.is_lost() {
                BuildResult::Retry
            } else if build.stop.is_cancelled() {
                BuildResult::Cancelled
            } else {
                BuildResult::Failure
            })),
        }
    }
}

struct Checkout<'a> {
    run: &'a StepRun<'a>,
    shell: &'a ShellOptions,
    step: &'a GitStep,
    repourl: &'a str,
    branch: &'a str,
}

impl Checkout<'_> {
    /// Brings `dir` to the wanted revision (or the branch's head); false when git failed.
    async fn update(
        &self,
        stdio: &mut LogWriter,
        dir: &Path,
        revision: Option<&str>,
    ) -> Result<bool, String> {
        let worker = &self.run.build.worker;
        let fresh = matches!(self.step.mode, GitMode::Full(GitMethod::Clobber))
            || !worker.exists(&dir.join(".git")).await?;
        if fresh {
            remove(self.run.build, dir).await?;
            match worker.make_dir(dir).await? {
                Outcome::Exited(0) => {}
                other => return Err(format!("cannot create {}: {other:?}", dir.display())),
            }
            let mut clone = self.git(&["clone"]);
            if self.step.progress {
                clone.push("--progress".into());
            }
            if let Some(depth) = self.step.shallow.filter(|_| revision.is_none()) {
                clone.extend(["--depth".into(), depth.to_string()]);
            }
            if !self.branch.is_empty() && self.branch != "HEAD" {
                clone.extend(["--branch".into(), self.branch.to_string()]);
            }
            clone.extend([self.repourl.to_string(), ".".into()]);
            if !self.git_ok(stdio, CommandLine::Argv(clone), dir).await? {
                return Ok(false);
            }
        } else {
            let mut fetch = self.git(&["fetch", "-f"]);
            if self.step.progress {
                fetch.push("--progress".into());
            }
            if self.step.tags {
                fetch.push("-t".into());
            }
            if let Some(depth) = self.step.shallow {
                fetch.extend(["--depth".into(), depth.to_string()]);
            }
            fetch.extend([self.repourl.to_string(), self.branch.to_string()]);
            if !self.git_ok(stdio, CommandLine::Argv(fetch), dir).await? {
                return Ok(false);
            }
        }
        let target = match revision {
            Some(rev) => rev.to_string(),
            None if fresh => "HEAD".to_string(),
            None => "FETCH_HEAD".to_string(),
        };
        let reset = self.git(&["reset", "--hard", &target, "--"]);
        if !self.git_ok(stdio, CommandLine::Argv(reset), dir).await? {
            return Ok(false);
        }
        let clean = match self.step.mode {
            GitMode::Full(GitMethod::Clean) => Some(&["clean", "-f", "-f", "-d"][..]),
            GitMode::Full(GitMethod::Fresh) => Some(&["clean", "-f", "-f", "-d", "-x"][..]),
            _ => None,
        };
        if let Some(clean) = clean {
            if !self
                .git_ok(stdio, CommandLine::Argv(self.git(clean)), dir)
                .await?
            {
                return Ok(false);
            }
        }
        if !self.branch.is_empty() && self.branch != "HEAD" {
            let name = self.git(&["checkout", "-B", self.branch]);
            if !self.git_ok(stdio, CommandLine::Argv(name), dir).await? {
                return Ok(false);
            }
        }
        if self.step.submodules {
            for args in [
                &["submodule", "sync"][..],
                &["submodule", "update", "--init", "--recursive", "--force"][..],
            ] {
                if !self
                    .git_ok(stdio, CommandLine::Argv(self.git(args)), dir)
                    .await?
                {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// `git` with the step's `-c` settings, then `args`.
    fn git(&self, args: &[&str]) -> Vec<String> {
        let mut argv = vec!["git".to_string()];
        for (key, value) in &self.step.config {
            argv.extend(["-c".into(), format!("{key}={value}")]);
        }
        argv.extend(args.iter().map(|a| a.to_string()));
        argv
    }

    async fn git_ok(
        &self,
        stdio: &mut LogWriter,
        command: CommandLine,
        dir: &Path,
    ) -> Result<bool, String> {
        let ran = self
            .run
            .run_in_log(stdio, command, self.shell, dir, Capture::default())
            .await?;
        Ok(ran.results == BuildResult::Success)
    }
}

async fn remove(build: &RunningBuild, dir: &Path) -> Result<(), String> {
    match build.worker.remove_dir(dir).await? {
        Outcome::Exited(0) => Ok(()),
        other => Err(format!("cannot remove {}: {other:?}", dir.display())),
    }
}
