//! How much of the protocol a run explores: the workload and the faults.
//! Every execution within these bounds is explored, none beyond them.

/// A run's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Clients, each its own customer.
    pub clients: u8,
    /// Whether the last client cancels what it reserved.
    pub cancels: bool,
    /// Orders each client places, each under its own idempotency key.
    pub orders: u8,
    /// Units of the one product in stock; each order asks for one.
    pub stock: u8,
    /// How many times a client sends one order before it gives up.
    pub attempts: u8,
    /// Workers per consumer: events each consumer handles at once.
    pub workers: u8,
    /// Crashes of order-service, payment-service or inventory-service.
    pub crashes: u8,
    /// Messages the network delivers twice.
    pub duplicates: u8,
    /// Consumer calls that time out (a cut or slow link).
    pub timeouts: u8,
    /// Whether the outbox starts with one poison event, which no consumer
    /// can handle (a producer's bug), so that dead-lettering is explored.
    pub poison: bool,
    /// The longest execution explored, in steps; `None` for all of them.
    pub depth: Option<usize>,
}

impl Bounds {
    /// A small start for custom bounds: one client, one order, one laptop,
    /// no faults.
    pub const ONE_ORDER: Bounds = Bounds {
        clients: 1,
        cancels: true,
        orders: 1,
        stock: 1,
        attempts: 2,
        workers: 1,
        crashes: 0,
        duplicates: 0,
        timeouts: 0,
        poison: false,
        depth: None,
    };
}

/// The bounds the broken variants are checked in: two customers for the
/// last laptop, the second of whom cancels, no faults. Each variant is
/// explored breadth-first until its first counterexample, so the bounds
/// need only make every variant's bug reachable.
pub const MUTANT_BOUNDS: Bounds = Bounds {
    clients: 2,
    attempts: 1,
    ..Bounds::ONE_ORDER
};

/// One bounded run: a corner of the protocol explored exhaustively.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub name: &'static str,
    pub bounds: Bounds,
}

const fn run(name: &'static str, bounds: Bounds) -> Run {
    Run { name, bounds }
}

/// `stockroom model`'s runs. Faults multiply the executions of every step
/// they may strike between, so no single bound that two cores explore in
/// minutes reaches everything: each run is a different corner, explored
/// in full. Two customers race for the last laptop (one cancels) with no
/// faults; then one order under each kind of fault, and one poison event.
/// About two million distinct states in two to three minutes on the
/// two-core machine, release build.
pub const DEFAULT_RUNS: [Run; 5] = [
    run(
        "flash sale",
        Bounds {
            clients: 2,
            ..Bounds::ONE_ORDER
        },
    ),
    run(
        "a crash",
        Bounds {
            crashes: 1,
            ..Bounds::ONE_ORDER
        },
    ),
    run(
        "a duplicated message",
        Bounds {
            duplicates: 1,
            ..Bounds::ONE_ORDER
        },
    ),
    run(
        "a timed-out call",
        Bounds {
            timeouts: 1,
            ..Bounds::ONE_ORDER
        },
    ),
    run(
        "a poison event",
        Bounds {
            poison: true,
            ..Bounds::ONE_ORDER
        },
    ),
];

/// CI's runs: the same corners with one attempt per order (no retries),
/// small enough for a debug build in well under two minutes.
pub const SMOKE_RUNS: [Run; 3] = [
    run(
        "flash sale",
        Bounds {
            clients: 2,
            cancels: false,
            attempts: 1,
            ..Bounds::ONE_ORDER
        },
    ),
    run(
        "a crash",
        Bounds {
            crashes: 1,
            attempts: 1,
            ..Bounds::ONE_ORDER
        },
    ),
    run(
        "a poison event",
        Bounds {
            poison: true,
            attempts: 1,
            ..Bounds::ONE_ORDER
        },
    ),
];

/// The bounds a command line may set; what it leaves out stays as in
/// [`Bounds::ONE_ORDER`]. Any bound given (or `poison`) makes one custom run
/// instead of the default (or smoke) runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChosenBounds {
    pub clients: Option<u8>,
    pub orders: Option<u8>,
    pub stock: Option<u8>,
    pub crashes: Option<u8>,
    pub duplicates: Option<u8>,
    pub timeouts: Option<u8>,
    pub attempts: Option<u8>,
    pub workers: Option<u8>,
    pub poison: bool,
    /// The longest execution of every run, in steps.
    pub depth: Option<usize>,
    /// CI's smaller runs, when no bound is given.
    pub smoke: bool,
}

impl ChosenBounds {
    /// The custom bounds, if any bound is given.
    fn custom(&self) -> Option<Bounds> {
        let given = [
            self.clients,
            self.orders,
            self.stock,
            self.crashes,
            self.duplicates,
            self.timeouts,
            self.attempts,
            self.workers,
        ];
        if given.iter().all(Option::is_none) && !self.poison {
            return None;
        }
        let start = Bounds::ONE_ORDER;
        Some(Bounds {
            clients: self.clients.unwrap_or(start.clients),
            orders: self.orders.unwrap_or(start.orders),
            stock: self.stock.unwrap_or(start.stock),
            crashes: self.crashes.unwrap_or(start.crashes),
            duplicates: self.duplicates.unwrap_or(start.duplicates),
            timeouts: self.timeouts.unwrap_or(start.timeouts),
            attempts: self.attempts.unwrap_or(start.attempts),
            workers: self.workers.unwrap_or(start.workers),
            poison: self.poison,
            ..start
        })
    }

    /// The runs these choices make: one custom run, or the smoke or
    /// default runs, each bounded to `depth`.
    pub fn runs(&self) -> Vec<Run> {
        let runs = match (self.custom(), self.smoke) {
            (Some(bounds), _) => vec![Run {
                name: "custom",
                bounds,
            }],
            (None, true) => SMOKE_RUNS.to_vec(),
            (None, false) => DEFAULT_RUNS.to_vec(),
        };
        runs.into_iter()
            .map(|run| Run {
                bounds: Bounds {
                    depth: self.depth,
                    ..run.bounds
                },
                ..run
            })
            .collect()
    }
}
