//! The CPU time a phase costs the machine: every core's busy time, read from
//! Linux's `/proc/stat` before the load and again once every order settled,
//! divided by the orders answered.
//!
//! Throughput on a shared or throttled machine moves from run to run by more
//! than most changes are worth; the CPU an order takes moves much less, and
//! it counts every process on the order's path at once: the load generator,
//! the services, and the database. It counts everything else the machine
//! runs too, so it is only as good as the machine is quiet.

/// The unit of `/proc/stat`'s times: Linux reports them in `USER_HZ`, 100
/// ticks a second on every architecture it supports (`sysconf(_SC_CLK_TCK)`
/// answers it), whatever the kernel's own tick rate.
const TICKS_PER_SECOND: f64 = 100.0;

/// Every core's busy time so far, in ticks, or `None` off Linux.
pub(crate) fn busy_ticks() -> Option<u64> {
    busy_ticks_of(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The busy ticks on the first line of a `/proc/stat` (`cpu  user nice
/// system idle iowait irq softirq steal …`): user, nice, system, irq and
/// softirq. Idle and waiting for I/O are not work, and steal is time the
/// machine's host gave to someone else.
fn busy_ticks_of(stat: &str) -> Option<u64> {
    let line = stat.lines().next()?;
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<u64> = fields
        .take(7)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [user, nice, system, _idle, _iowait, irq, softirq] = ticks.try_into().ok()?;
    Some(user + nice + system + irq + softirq)
}

/// The machine's CPU time per order, in microseconds, between two readings
/// of [`busy_ticks`], over `orders` answered.
pub(crate) fn micros_per_order(
    before: Option<u64>,
    after: Option<u64>,
    orders: u64,
) -> Option<f64> {
    let busy_ticks = after?.checked_sub(before?)?;
    Some(busy_ticks as f64 / TICKS_PER_SECOND * 1e6 / orders.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_ticks_leave_idle_waiting_and_steal_out() {
        let stat = "cpu  336851 7 84326 133240 4796 5 22751 1111 0 0\n\
                    cpu0 168000 3 42000 66000 2000 2 11000 500 0 0\n";
        assert_eq!(busy_ticks_of(stat), Some(336_851 + 7 + 84_326 + 5 + 22_751));
    }

    #[test]
    fn a_file_of_another_shape_gives_nothing() {
        assert_eq!(busy_ticks_of(""), None);
        assert_eq!(busy_ticks_of("intr 1 2 3 4 5 6 7 8"), None);
        assert_eq!(busy_ticks_of("cpu  1 2 3"), None);
        assert_eq!(busy_ticks_of("cpu  1 2 x 4 5 6 7"), None);
    }

    #[test]
    fn a_second_of_busy_time_over_a_thousand_orders_is_a_millisecond_each() {
        assert_eq!(micros_per_order(Some(50), Some(150), 1_000), Some(1_000.0));
        assert_eq!(micros_per_order(Some(150), Some(50), 1_000), None);
        assert_eq!(micros_per_order(None, Some(50), 1_000), None);
    }
}
