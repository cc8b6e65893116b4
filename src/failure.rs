//! How a command ends when it does not succeed: the exit code and what to print.

/// Why a command did not succeed, and so its exit code.
pub enum Failure {
    /// Bad arguments or invalid input (exit 2).
    Usage(Option<miette::Report>),
    /// The run itself failed (exit 1).
    Run(Option<miette::Report>),
    /// Stopped by Ctrl-C / SIGTERM (exit 130).
    Interrupted(Option<miette::Report>),
    /// `driver check` found problems (exit 3): the check ran, the tree is not healthy.
    Unhealthy(Option<miette::Report>),
}

impl Failure {
    pub fn usage(r: impl Into<miette::Report>) -> Self {
        Failure::Usage(Some(r.into()))
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Run(_) => 1,
            Failure::Interrupted(_) => 130,
            Failure::Unhealthy(_) => 3,
        }
    }

    /// What to print on stderr; `None` when it was already reported.
    pub fn report(&self) -> Option<&miette::Report> {
        match self {
            Failure::Usage(r)
            | Failure::Run(r)
            | Failure::Interrupted(r)
            | Failure::Unhealthy(r) => r.as_ref(),
        }
    }
}
