//! Shell completions (bash, zsh, fish) and man pages (one per subcommand), generated from the
//! binary's own flags (`manage-timers --completions SHELL`, `--man [PAGE]`, `--man-pages`).
//!
//! clap_complete's bash script names the function of a subcommand of a hyphenated binary in
//! two spellings (`manage__timers__subcmd__install` is set, `manage__subcmd__timers__…` is
//! matched), so nothing after a subcommand completed; [`fix_bash`] repairs that for every
//! binary's script, and puts the job names where a job name is expected.

use std::ffi::OsString;

use clap::CommandFactory;
use zakaz_core::jobs::JOBS;

use crate::Cli;

/// Shells whose completions `install` puts in place.
pub const SHELLS: &[&str] = &["bash", "zsh", "fish"];

/// Every name an operator may type for a job: names and aliases.
pub fn job_words() -> Vec<&'static str> {
    JOBS.iter()
        .flat_map(|j| std::iter::once(j.name).chain(j.aliases.iter().copied()))
        .collect()
}

/// The repaired bash script of binary `name` (see the module comment). Idempotent.
pub fn fix_bash(name: &str, text: &str) -> String {
    let mut out = text.to_owned();
    if name.contains('-') {
        let wrong = name.replace('-', "__subcmd__");
        let right = name.replace('-', "__");
        out = out.replace(&format!("{wrong}__subcmd__"), &format!("{right}__subcmd__"));
        out = out.replace(&format!("        {wrong})"), &format!("        {right})"));
    }
    if name == "manage-timers" {
        // The positional job name shows as `[NAME]` in a subcommand's word list.
        out = out.replace("[NAME]", &job_words().join(" "));
        // And `--` ends the options of `run`: what follows is the job's.
        out = out.replace("[ARGS]...", "");
    }
    out
}

/// `--completions SHELL`, `--man [PAGE]`, `--man-pages` (taken before anything else is parsed,
/// so no setting is needed). `None` for an ordinary command line.
pub fn generated(args: &[OsString]) -> Option<Result<String, String>> {
    let first = args.get(1)?.to_str()?;
    let second = args.get(2).and_then(|s| s.to_str());
    match first {
        "--completions" => Some(completions(second.unwrap_or_default())),
        "--man" => Some(man_page(second.unwrap_or("manage-timers"))),
        "--man-pages" => Some(Ok(man_pages().join("\n") + "\n")),
        _ => None,
    }
}

pub fn completions(shell: &str) -> Result<String, String> {
    let Ok(parsed) = shell.parse::<clap_complete::Shell>() else {
        return Err(format!(
            "`--completions` needs a shell: bash, zsh, fish, elvish or powershell (got `{shell}`)"
        ));
    };
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(parsed, &mut cmd, "manage-timers", &mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    Ok(match parsed {
        clap_complete::Shell::Bash => fix_bash("manage-timers", &text),
        clap_complete::Shell::Fish => text + &fish_job_names(),
        _ => text,
    })
}

/// clap_complete's fish script completes options only: the job names of every subcommand
/// that takes one.
fn fish_job_names() -> String {
    let cmd = Cli::command();
    let mut out = String::from("# Job names (from the job table)\n");
    for sub in cmd.get_subcommands() {
        if !sub.get_positionals().any(|a| a.get_id() == "name") {
            continue;
        }
        for job in JOBS {
            for word in std::iter::once(job.name).chain(job.aliases.iter().copied()) {
                out.push_str(&format!(
                    "complete -c manage-timers -n \"__fish_manage_timers_using_subcommand {}\" -f -a \"{word}\" -d '{}'\n",
                    sub.get_name(),
                    job.description.replace('\'', "\\'")
                ));
            }
        }
    }
    out
}

/// `manage-timers` and one page per subcommand: `manage-timers-install`, …, as the main
/// page's SUBCOMMANDS section refers to them.
pub fn man_pages() -> Vec<String> {
    let cmd = Cli::command();
    std::iter::once("manage-timers".to_owned())
        .chain(
            cmd.get_subcommands()
                .map(|s| format!("manage-timers-{}", s.get_name())),
        )
        .collect()
}

pub fn man_page(page: &str) -> Result<String, String> {
    let mut cmd = Cli::command();
    cmd.build();
    let target = if page == "manage-timers" {
        cmd
    } else {
        let sub = page
            .strip_prefix("manage-timers-")
            .and_then(|s| cmd.find_subcommand(s))
            .ok_or_else(|| {
                format!(
                    "no man page `{page}`; the pages are: {}",
                    man_pages().join(", ")
                )
            })?;
        // A page is rendered once per process: leaking its name is fine.
        sub.clone()
            .name(&*Box::leak(page.to_owned().into_boxed_str()))
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(target)
        .render(&mut out)
        .map_err(|e| format!("cannot render the man page: {e}"))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
