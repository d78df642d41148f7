//! Orders a stack's services by `depends_on` (every service after all it depends on; services
//! that are free to go keep the compose file's order) and names a cycle when there is one.
//! The dependencies must already be known to lie inside the stack. Must not import anything
//! outside `supervisor`.

use super::error::ComposeError;
use super::spec::{ServiceSpec, StackKind};

/// `services` in dependency order, or the cycle that prevents one (`a -> b -> a`).
pub fn dependency_order(
    stack: StackKind,
    services: Vec<ServiceSpec>,
) -> Result<Vec<ServiceSpec>, ComposeError> {
    let index = |name: &str| services.iter().position(|s| s.name == name);
    // deps[i]: indices service i depends on.
    let deps: Vec<Vec<usize>> =
        services.iter().map(|s| s.depends_on.iter().filter_map(|d| index(&d.service)).collect()).collect();
    let mut placed = vec![false; services.len()];
    let mut order = Vec::with_capacity(services.len());
    while order.len() < services.len() {
        let ready = (0..services.len()).find(|&i| !placed[i] && deps[i].iter().all(|&d| placed[d]));
        match ready {
            Some(i) => {
                placed[i] = true;
                order.push(i);
            }
            None => {
                let cycle =
                    find_cycle(&deps, &placed).into_iter().map(|i| services[i].name.clone()).collect();
                return Err(ComposeError::DependencyCycle { stack: stack.to_string(), cycle });
            }
        }
    }
    let mut slots: Vec<Option<ServiceSpec>> = services.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}

/// Walks unplaced dependencies from the first unplaced service until one repeats; every
/// unplaced service has an unplaced dependency, so the walk always closes a cycle.
fn find_cycle(deps: &[Vec<usize>], placed: &[bool]) -> Vec<usize> {
    let Some(start) = placed.iter().position(|p| !p) else { return Vec::new() };
    let mut path = vec![start];
    let mut at = start;
    // At most one step per service before a repeat.
    for _ in 0..deps.len() {
        let Some(&next) = deps[at].iter().find(|&&d| !placed[d]) else { break };
        if let Some(first) = path.iter().position(|&p| p == next) {
            let mut cycle = path[first..].to_vec();
            cycle.push(next);
            return cycle;
        }
        path.push(next);
        at = next;
    }
    path
}
