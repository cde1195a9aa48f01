//! Cycle detection on an adjacency list, reporting the cycle's path.

/// Finds a cycle in the directed graph whose node `i` has the edges `children[i]`, and returns
/// its path: the nodes in edge order, the first repeated at the end (`[a, b, c, a]`). `None`
/// when the graph is acyclic. Iterative depth-first search: O(nodes + edges), no recursion.
pub fn find_cycle(children: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Color {
        White,
        Grey,
        Black,
    }
    let mut color = vec![Color::White; children.len()];
    // The DFS path: (node, index of the next child to visit).
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for root in 0..children.len() {
        if color[root] != Color::White {
            continue;
        }
        color[root] = Color::Grey;
        stack.push((root, 0));
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let Some(&child) = children[node].get(*next) else {
                color[node] = Color::Black;
                stack.pop();
                continue;
            };
            *next += 1;
            match color[child] {
                Color::White => {
                    color[child] = Color::Grey;
                    stack.push((child, 0));
                }
                Color::Grey => {
                    let start = stack.iter().position(|&(n, _)| n == child).unwrap_or(0);
                    let mut path: Vec<usize> = stack[start..].iter().map(|&(n, _)| n).collect();
                    path.push(child);
                    return Some(path);
                }
                Color::Black => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_self_loops_and_longer_cycles() {
        assert_eq!(find_cycle(&[vec![0]]), Some(vec![0, 0]));
        assert_eq!(
            find_cycle(&[vec![1], vec![2], vec![0]]),
            Some(vec![0, 1, 2, 0])
        );
        assert_eq!(find_cycle(&[vec![1, 2], vec![2], vec![]]), None);
        assert_eq!(
            find_cycle(&[vec![1], vec![], vec![3], vec![2]]),
            Some(vec![2, 3, 2])
        );
    }
}
