//! The paper's Table I (5 runs of 100 000 iterations each), for the report's side-by-side rows.

/// One algorithm's row of the paper's Table I: performance (mean ± 95% CI) and iterations to
/// each goal (mean ± 95% CI; `None`: not reached).
pub struct PaperRow {
    /// Task name (`path_tracking`, `pendulum`).
    pub task: &'static str,
    /// Algorithm key (`mpg_v1`, ...).
    pub algo: &'static str,
    /// Performance, mean and 95% CI.
    pub performance: (f64, f64),
    /// Iterations to each of the task's four goals, mean and 95% CI.
    pub reach: [Option<(f64, f64)>; 4],
}

const fn r(m: f64, ci: f64) -> Option<(f64, f64)> {
    Some((m, ci))
}

/// The paper's Table I (MPG-v1 and n-step DPG fail on the pendulum and have no row there).
pub const TABLE_I: [PaperRow; 10] = [
    PaperRow {
        task: "path_tracking",
        algo: "mpg_v1",
        performance: (-3.73, 1.16),
        reach: [
            r(3000.0, 0.0),
            r(9000.0, 4898.0),
            r(11000.0, 7483.0),
            r(18000.0, 4898.0),
        ],
    },
    PaperRow {
        task: "path_tracking",
        algo: "mpg_v2",
        performance: (-4.60, 1.40),
        reach: [
            r(3000.0, 0.0),
            r(6000.0, 4898.0),
            r(11000.0, 7483.0),
            r(31000.0, 27856.0),
        ],
    },
    PaperRow {
        task: "path_tracking",
        algo: "ndpg",
        performance: (-21.89, 47.87),
        reach: [
            r(30000.0, 12961.0),
            r(32000.0, 17204.0),
            r(41000.0, 14966.0),
            None,
        ],
    },
    PaperRow {
        task: "path_tracking",
        algo: "nadp",
        performance: (-56.83, 7.44),
        reach: [r(17000.0, 2828.0), None, None, None],
    },
    PaperRow {
        task: "path_tracking",
        algo: "td3",
        performance: (-13.30, 26.50),
        reach: [
            r(38000.0, 22090.0),
            r(49000.0, 31496.0),
            r(58000.0, 26981.0),
            None,
        ],
    },
    PaperRow {
        task: "path_tracking",
        algo: "sac",
        performance: (-33.18, 19.97),
        reach: [r(17000.0, 15748.0), r(29000.0, 34756.0), None, None],
    },
    PaperRow {
        task: "pendulum",
        algo: "mpg_v2",
        performance: (-0.08, 0.16),
        reach: [
            r(3000.0, 0.0),
            r(14000.0, 2828.0),
            r(15000.0, 0.0),
            r(17000.0, 5656.0),
        ],
    },
    PaperRow {
        task: "pendulum",
        algo: "nadp",
        performance: (-8.22, 7.64),
        reach: [r(4000.0, 2828.0), None, None, None],
    },
    PaperRow {
        task: "pendulum",
        algo: "td3",
        performance: (-0.48, 1.35),
        reach: [
            r(11000.0, 22090.0),
            r(23000.0, 11313.0),
            r(52000.0, 50990.0),
            None,
        ],
    },
    PaperRow {
        task: "pendulum",
        algo: "sac",
        performance: (-0.09, 0.12),
        reach: [
            r(28000.0, 5656.0),
            r(29000.0, 7483.0),
            r(33000.0, 8485.0),
            r(48000.0, 50911.0),
        ],
    },
];

/// The paper's row of `algo` on `task`, if it has one.
pub fn paper_row(task: &str, algo: &str) -> Option<&'static PaperRow> {
    TABLE_I.iter().find(|r| r.task == task && r.algo == algo)
}
