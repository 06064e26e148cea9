//! Scenarios: how a data set is cut into the sequence of tasks a continual learner sees.
//!
//! The three types of incremental learning of van de Ven et al. (2022) are covered:
//! class-incremental (`class`: one head over all classes, no task identity), task-incremental
//! (`task`: the same class splits, with the task identity known at train and test time), and
//! domain-incremental (`domain`: upstream's instance-incremental split of all classes into
//! disjoint parts; `permuted` and `rotated`: every task sees all images through its own
//! fixed pixel permutation or rotation).

use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::SplitDataset;

/// A sample of a scenario: image `index` of a split, seen through view `view` of the
/// scenario (see [`View`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SampleRef {
    pub index: u32,
    pub view: u16,
}

/// How a task presents its images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// The images as they are.
    Identity,
    /// Pixels permuted: value `i` of the presented image is value `permutation[i]` of the
    /// stored one.
    Permutation(Vec<u32>),
    /// Each channel resampled through the same bilinear taps (a rotation).
    Resampled(Resampling),
}

/// Bilinear resampling of an image plane: every output pixel is a weighted sum of four
/// input pixels; taps that fall outside the image read 0 (black).
#[derive(Debug, Clone, PartialEq)]
pub struct Resampling {
    /// Per output pixel, four (input pixel index or [`Resampling::OUTSIDE`], weight) taps.
    pub taps: Vec<[(u32, f32); 4]>,
}

impl Eq for Resampling {}

impl Resampling {
    /// The index of a tap outside the image.
    pub const OUTSIDE: u32 = u32::MAX;

    /// The rotation of an `height` x `width` plane by `degrees` (counter-clockwise) about
    /// its centre.
    pub fn rotation(height: usize, width: usize, degrees: f64) -> Self {
        let (sin, cos) = degrees.to_radians().sin_cos();
        let (cy, cx) = ((height as f64 - 1.0) / 2.0, (width as f64 - 1.0) / 2.0);
        let pixel = |y: f64, x: f64| -> u32 {
            if y < 0.0 || x < 0.0 || y >= height as f64 || x >= width as f64 {
                Self::OUTSIDE
            } else {
                (y as usize * width + x as usize) as u32
            }
        };
        let taps = (0..height * width)
            .map(|i| {
                let (dy, dx) = ((i / width) as f64 - cy, (i % width) as f64 - cx);
                // The source of an output pixel: the output position rotated back.
                let sx = cos * dx - sin * dy + cx;
                let sy = sin * dx + cos * dy + cy;
                // Snap values within rounding noise of a grid point onto it.
                let (sx, sy) = (snap(sx), snap(sy));
                let (x0, y0) = (sx.floor(), sy.floor());
                let (fx, fy) = ((sx - x0) as f32, (sy - y0) as f32);
                [
                    (pixel(y0, x0), (1.0 - fx) * (1.0 - fy)),
                    (pixel(y0, x0 + 1.0), fx * (1.0 - fy)),
                    (pixel(y0 + 1.0, x0), (1.0 - fx) * fy),
                    (pixel(y0 + 1.0, x0 + 1.0), fx * fy),
                ]
            })
            .collect();
        Resampling { taps }
    }
}

fn snap(v: f64) -> f64 {
    if (v - v.round()).abs() < 1e-9 {
        v.round()
    } else {
        v
    }
}

/// One task of a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The samples to train on.
    pub train: Vec<SampleRef>,
    /// The samples that evaluate the task.
    pub test: Vec<SampleRef>,
    /// The classes of the task's own split, ascending (all classes for domain scenarios).
    pub classes: Vec<usize>,
}

/// Whether the learner is told which task a sample belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskIdentity {
    /// Not known: one head over all classes (class- and domain-incremental).
    Unknown,
    /// Known at train and test time: logits are restricted to the task's classes.
    Known,
}

/// How the classes of a class split are ordered before being cut into tasks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassOrder {
    /// 0, 1, 2, …
    Natural,
    /// A permutation of all classes, given by the user.
    Given(Vec<usize>),
    /// A permutation drawn from the run's seed.
    Shuffled,
}

/// What the tasks are made of: the typed form of upstream's `--tasksets-config`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "scenario")]
pub enum ScenarioSpec {
    /// One task over the whole data set: plain deep learning.
    Single,
    /// Tasks of disjoint classes: `initial_increment` classes, then `increment` per task.
    Classes {
        initial_increment: usize,
        increment: usize,
        class_order: ClassOrder,
        task_identity: TaskIdentity,
    },
    /// Tasks of `increment` disjoint classes each, every task's classes relabelled by their
    /// place in it (0, 1, …): one head of `increment` outputs shared by every task, the task
    /// not known (van de Ven et al.'s domain-incremental Split-MNIST: first or second digit).
    DomainSplit { increment: usize, class_order: ClassOrder },
    /// All classes, the samples split into `num_tasks` disjoint random parts.
    Instances { num_tasks: usize },
    /// All samples in every task, each task through its own pixel permutation (task 0: none).
    Permuted { num_tasks: usize },
    /// All samples in every task, task t rotated by `angles[t]` degrees.
    Rotated { angles: Vec<f64> },
}

impl Eq for ScenarioSpec {}

/// A scenario specification that cannot be applied to a data set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScenarioError(pub String);

/// The ordered tasks of a run and the views their samples refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub tasks: Vec<Task>,
    /// The views the tasks' samples refer to.
    pub views: Arc<Vec<View>>,
    pub task_identity: TaskIdentity,
    /// The label each class of the data set is trained and tested as, where the scenario
    /// relabels them ([`ScenarioSpec::DomainSplit`]); the tasks' classes are these labels.
    pub relabel: Option<Arc<Vec<u32>>>,
}

/// Options that apply to any scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScenarioOptions {
    /// Train task t on the training samples of tasks 0..=t (transfer and scratch baselines).
    pub concatenate: bool,
    /// Train on the first N training samples of the data set only.
    pub train_limit: Option<usize>,
    /// Evaluate on the first N test samples of the data set only.
    pub test_limit: Option<usize>,
}

impl Scenario {
    /// Cuts `data` into tasks as `spec` says; `seed` drives every random choice.
    pub fn build(
        spec: &ScenarioSpec,
        data: &SplitDataset,
        options: ScenarioOptions,
        seed: u64,
    ) -> Result<Self, ScenarioError> {
        let train_len = options
            .train_limit
            .map_or(data.train.len(), |n| n.min(data.train.len()));
        let test_len = options.test_limit.map_or(data.test.len(), |n| n.min(data.test.len()));
        let all_classes: Vec<usize> = (0..data.num_classes).collect();
        let identity = |indices: Vec<usize>| -> Vec<SampleRef> {
            indices
                .into_iter()
                .map(|i| SampleRef {
                    index: i as u32,
                    view: 0,
                })
                .collect()
        };
        let mut relabel = None;
        let (mut tasks, views, task_identity) = match spec {
            ScenarioSpec::Single => (
                vec![Task {
                    train: identity((0..train_len).collect()),
                    test: identity((0..test_len).collect()),
                    classes: all_classes,
                }],
                vec![View::Identity],
                TaskIdentity::Unknown,
            ),
            ScenarioSpec::Classes {
                initial_increment,
                increment,
                class_order,
                task_identity,
            } => {
                let order = resolve_class_order(class_order, data.num_classes, seed)?;
                let groups = class_groups(&order, *initial_increment, *increment)?;
                let tasks = groups
                    .into_iter()
                    .map(|mut classes| {
                        let of_classes = |labels: &[u32], len: usize| {
                            identity((0..len).filter(|&i| classes.contains(&(labels[i] as usize))).collect())
                        };
                        let train = of_classes(data.train.labels(), train_len);
                        let test = of_classes(data.test.labels(), test_len);
                        classes.sort_unstable();
                        Task { train, test, classes }
                    })
                    .collect();
                (tasks, vec![View::Identity], *task_identity)
            }
            ScenarioSpec::DomainSplit { increment, class_order } => {
                let order = resolve_class_order(class_order, data.num_classes, seed)?;
                let groups = class_groups(&order, *increment, *increment)?;
                let mut labels = vec![0u32; data.num_classes];
                for group in &groups {
                    for (place, &class) in group.iter().enumerate() {
                        labels[class] = place as u32;
                    }
                }
                relabel = Some(Arc::new(labels));
                let tasks = groups
                    .into_iter()
                    .map(|classes| {
                        let of_classes = |labels: &[u32], len: usize| {
                            identity((0..len).filter(|&i| classes.contains(&(labels[i] as usize))).collect())
                        };
                        Task {
                            train: of_classes(data.train.labels(), train_len),
                            test: of_classes(data.test.labels(), test_len),
                            classes: (0..*increment).collect(),
                        }
                    })
                    .collect();
                (tasks, vec![View::Identity], TaskIdentity::Unknown)
            }
            ScenarioSpec::Instances { num_tasks } => {
                check_num_tasks(*num_tasks, train_len.min(test_len))?;
                let train_parts = random_parts(train_len, *num_tasks, seed);
                let test_parts = random_parts(test_len, *num_tasks, seed ^ 0x5EED_7E57);
                let tasks = train_parts
                    .into_iter()
                    .zip(test_parts)
                    .map(|(train, test)| Task {
                        train: identity(train),
                        test: identity(test),
                        classes: all_classes.clone(),
                    })
                    .collect();
                (tasks, vec![View::Identity], TaskIdentity::Unknown)
            }
            ScenarioSpec::Permuted { num_tasks } => {
                check_view_count(*num_tasks)?;
                let pixels: usize = fixed_shape(data, "permuted")?.iter().product();
                let views = (0..*num_tasks)
                    .map(|t| match t {
                        0 => View::Identity,
                        _ => View::Permutation(permutation(pixels, task_seed(seed, t))),
                    })
                    .collect();
                viewed_tasks(views, train_len, test_len, data)?
            }
            ScenarioSpec::Rotated { angles } => {
                check_view_count(angles.len())?;
                let [_, h, w] = fixed_shape(data, "rotated")?;
                let views = angles
                    .iter()
                    .map(|&a| View::Resampled(Resampling::rotation(h, w, a)))
                    .collect();
                viewed_tasks(views, train_len, test_len, data)?
            }
        };
        if let Some((t, _)) = tasks.iter().enumerate().find(|(_, task)| task.train.is_empty()) {
            return Err(ScenarioError(format!(
                "task {} has no training sample (is --train-samples too small?)",
                t + 1
            )));
        }
        if options.concatenate {
            let mut seen = Vec::new();
            for task in &mut tasks {
                seen.extend_from_slice(&task.train);
                task.train = seen.clone();
            }
        }
        Ok(Scenario {
            tasks,
            views: Arc::new(views),
            task_identity,
            relabel,
        })
    }

    /// The outputs a model needs for this scenario on a data set of `data_classes` classes.
    pub fn num_outputs(&self, data_classes: usize) -> usize {
        match &self.relabel {
            Some(labels) => labels.iter().max().map_or(0, |&l| l as usize + 1),
            None => data_classes,
        }
    }

    /// The union of the classes of tasks 0..=task, ascending.
    pub fn classes_seen(&self, task: usize) -> Vec<usize> {
        let mut classes: Vec<usize> = self.tasks[..=task]
            .iter()
            .flat_map(|t| t.classes.iter().copied())
            .collect();
        classes.sort_unstable();
        classes.dedup();
        classes
    }
}

/// One task per view, each with every sample seen through its view (domain-incremental).
/// The shape every image of `data` has, which a `scenario` of pixel views needs.
fn fixed_shape(data: &SplitDataset, scenario: &str) -> Result<[usize; 3], ScenarioError> {
    data.image_shape().ok_or_else(|| {
        ScenarioError(format!(
            "scenario '{scenario}' needs images of one size; {} holds images of several sizes",
            data.name
        ))
    })
}

fn viewed_tasks(
    views: Vec<View>,
    train_len: usize,
    test_len: usize,
    data: &SplitDataset,
) -> Result<(Vec<Task>, Vec<View>, TaskIdentity), ScenarioError> {
    let all_classes: Vec<usize> = (0..data.num_classes).collect();
    let tasks = (0..views.len())
        .map(|t| {
            let through = |len: usize| -> Vec<SampleRef> {
                (0..len)
                    .map(|i| SampleRef {
                        index: i as u32,
                        view: t as u16,
                    })
                    .collect()
            };
            Task {
                train: through(train_len),
                test: through(test_len),
                classes: all_classes.clone(),
            }
        })
        .collect();
    Ok((tasks, views, TaskIdentity::Unknown))
}

/// A seed for task `t`'s random choices, derived from the run's seed.
fn task_seed(seed: u64, t: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(t as u64)
        .rotate_left(17)
        ^ 0xA076_1D64_78BD_642F
}

fn permutation(len: usize, seed: u64) -> Vec<u32> {
    let mut values: Vec<u32> = (0..len as u32).collect();
    values.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    values
}

/// Scenarios of views hold one view per task, numbered by `u16`.
fn check_view_count(num_tasks: usize) -> Result<(), ScenarioError> {
    check_num_tasks(num_tasks, usize::MAX)?;
    if num_tasks > u16::MAX as usize {
        return Err(ScenarioError(format!("'num_tasks' {num_tasks} exceeds {}", u16::MAX)));
    }
    Ok(())
}

fn check_num_tasks(num_tasks: usize, samples: usize) -> Result<(), ScenarioError> {
    if num_tasks == 0 {
        return Err(ScenarioError("'num_tasks' must be at least 1".into()));
    }
    if num_tasks > samples {
        return Err(ScenarioError(format!(
            "'num_tasks' {num_tasks} exceeds the {samples} samples to split"
        )));
    }
    Ok(())
}

fn resolve_class_order(order: &ClassOrder, num_classes: usize, seed: u64) -> Result<Vec<usize>, ScenarioError> {
    match order {
        ClassOrder::Natural => Ok((0..num_classes).collect()),
        ClassOrder::Shuffled => Ok(permutation(num_classes, task_seed(seed, usize::MAX))
            .into_iter()
            .map(|c| c as usize)
            .collect()),
        ClassOrder::Given(order) => {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            if sorted != (0..num_classes).collect::<Vec<_>>() {
                return Err(ScenarioError(format!(
                    "'class_order' {order:?} is not a permutation of the {num_classes} classes 0..{}",
                    num_classes - 1
                )));
            }
            Ok(order.clone())
        }
    }
}

/// Cuts the ordered classes into groups of `initial`, then `increment` classes.
fn class_groups(order: &[usize], initial: usize, increment: usize) -> Result<Vec<Vec<usize>>, ScenarioError> {
    let n = order.len();
    if initial == 0 || increment == 0 {
        return Err(ScenarioError(
            "'initial_increment' and 'increment' must be at least 1".into(),
        ));
    }
    if initial > n || (n - initial) % increment != 0 {
        return Err(ScenarioError(format!(
            "'initial_increment' {initial} and 'increment' {increment} do not cover the {n} classes \
             (need initial_increment + k * increment = {n})"
        )));
    }
    let mut groups = vec![order[..initial].to_vec()];
    groups.extend(order[initial..].chunks(increment).map(<[usize]>::to_vec));
    Ok(groups)
}

/// `0..len` shuffled and cut into `parts` parts whose sizes differ by at most one.
fn random_parts(len: usize, parts: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut indices: Vec<usize> = (0..len).collect();
    indices.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let (base, extra) = (len / parts, len % parts);
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for p in 0..parts {
        let size = base + usize::from(p < extra);
        let mut part = indices[start..start + size].to_vec();
        part.sort_unstable();
        out.push(part);
        start += size;
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::{ImageSet, ImageSource, Normalization};

    /// 100 training and 50 test images of 2x2 pixels; label = index % 10.
    fn data() -> SplitDataset {
        let set = |n: usize| ImageSet {
            images: (0..n * 4).map(|v| v as u8).collect(),
            labels: (0..n).map(|i| (i % 10) as u32).collect(),
            image_shape: [1, 2, 2],
        };
        SplitDataset {
            name: "toy".into(),
            train: Arc::new(set(100)),
            test: Arc::new(set(50)),
            num_classes: 10,
            normalization: Normalization::uniform(0.0, 1.0),
            kind: crate::Kind::Small,
            input_size: 2,
        }
    }

    fn classes(initial: usize, increment: usize, order: ClassOrder, identity: TaskIdentity) -> ScenarioSpec {
        ScenarioSpec::Classes {
            initial_increment: initial,
            increment,
            class_order: order,
            task_identity: identity,
        }
    }

    fn build(spec: ScenarioSpec, options: ScenarioOptions) -> Result<Scenario, ScenarioError> {
        Scenario::build(&spec, &data(), options, 42)
    }

    fn labels_of(samples: &[SampleRef], set: &Arc<dyn ImageSource>) -> HashSet<usize> {
        samples
            .iter()
            .map(|s| set.labels()[s.index as usize] as usize)
            .collect()
    }

    #[test]
    fn class_splits_have_the_right_classes_disjoint_and_complete() {
        let d = data();
        let scenario = build(
            classes(4, 3, ClassOrder::Natural, TaskIdentity::Unknown),
            Default::default(),
        )
        .unwrap();
        let expected = [vec![0, 1, 2, 3], vec![4, 5, 6], vec![7, 8, 9]];
        assert_eq!(scenario.tasks.len(), 3);
        let mut all_train = HashSet::new();
        for (task, classes) in scenario.tasks.iter().zip(&expected) {
            assert_eq!(&task.classes, classes);
            assert_eq!(labels_of(&task.train, &d.train), classes.iter().copied().collect());
            assert_eq!(labels_of(&task.test, &d.test), classes.iter().copied().collect());
            assert_eq!(task.train.len(), 10 * classes.len());
            for s in &task.train {
                assert!(all_train.insert(s.index), "sample {} in two tasks", s.index);
            }
        }
        assert_eq!(all_train.len(), 100);
        assert_eq!(scenario.classes_seen(1), vec![0, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn domain_splits_relabel_each_task_s_classes_by_their_place() {
        let d = data();
        let spec = ScenarioSpec::DomainSplit {
            increment: 2,
            class_order: ClassOrder::Given(vec![9, 8, 7, 6, 5, 4, 3, 2, 1, 0]),
        };
        let scenario = build(spec, Default::default()).unwrap();
        assert_eq!(scenario.tasks.len(), 5);
        assert_eq!(scenario.num_outputs(10), 2);
        assert_eq!(scenario.task_identity, TaskIdentity::Unknown);
        let relabel = scenario.relabel.as_ref().unwrap();
        // Task 0 holds digits 9 and 8: 9 is its first class (label 0), 8 its second.
        assert_eq!(labels_of(&scenario.tasks[0].train, &d.train), HashSet::from([9, 8]));
        assert_eq!((relabel[9], relabel[8], relabel[1], relabel[0]), (0, 1, 0, 1));
        assert!(scenario.tasks.iter().all(|t| t.classes == vec![0, 1]));
        assert_eq!(scenario.classes_seen(4), vec![0, 1]);
        // Without a relabelling, the outputs are the data set's classes.
        let plain = build(
            classes(2, 2, ClassOrder::Natural, TaskIdentity::Unknown),
            Default::default(),
        )
        .unwrap();
        assert_eq!(plain.num_outputs(10), 10);
        let uneven = ScenarioSpec::DomainSplit {
            increment: 3,
            class_order: ClassOrder::Natural,
        };
        assert!(
            build(uneven, Default::default()).is_err(),
            "3 does not divide 10 classes"
        );
    }

    #[test]
    fn class_orders_are_given_or_seeded() {
        let given = build(
            classes(
                5,
                5,
                ClassOrder::Given(vec![9, 8, 7, 6, 5, 4, 3, 2, 1, 0]),
                TaskIdentity::Known,
            ),
            Default::default(),
        )
        .unwrap();
        assert_eq!(given.tasks[0].classes, vec![5, 6, 7, 8, 9]);
        assert_eq!(given.task_identity, TaskIdentity::Known);
        let shuffled = |seed| {
            Scenario::build(
                &classes(2, 2, ClassOrder::Shuffled, TaskIdentity::Unknown),
                &data(),
                Default::default(),
                seed,
            )
            .unwrap()
        };
        let a: Vec<_> = shuffled(1).tasks.iter().map(|t| t.classes.clone()).collect();
        assert_eq!(
            a,
            shuffled(1).tasks.iter().map(|t| t.classes.clone()).collect::<Vec<_>>()
        );
        assert_ne!(
            a,
            shuffled(2).tasks.iter().map(|t| t.classes.clone()).collect::<Vec<_>>()
        );
        assert_ne!(a[0], vec![0, 1], "seed 1 happens to keep the natural order");
    }

    #[test]
    fn impossible_class_splits_are_rejected_with_the_reason() {
        let err = |spec| build(spec, Default::default()).unwrap_err().to_string();
        assert!(err(classes(4, 4, ClassOrder::Natural, TaskIdentity::Unknown)).contains("do not cover the 10 classes"));
        assert!(err(classes(11, 1, ClassOrder::Natural, TaskIdentity::Unknown)).contains("do not cover"));
        assert!(err(classes(0, 2, ClassOrder::Natural, TaskIdentity::Unknown)).contains("at least 1"));
        assert!(
            err(classes(5, 5, ClassOrder::Given(vec![0, 1, 2]), TaskIdentity::Unknown)).contains("not a permutation")
        );
    }

    #[test]
    fn instance_splits_are_disjoint_balanced_and_cover_everything() {
        let scenario = build(ScenarioSpec::Instances { num_tasks: 3 }, Default::default()).unwrap();
        let sizes: Vec<_> = scenario.tasks.iter().map(|t| t.train.len()).collect();
        assert_eq!(sizes, vec![34, 33, 33]);
        let all: HashSet<u32> = scenario
            .tasks
            .iter()
            .flat_map(|t| t.train.iter().map(|s| s.index))
            .collect();
        assert_eq!(all.len(), 100);
        assert_eq!(scenario.tasks.iter().map(|t| t.test.len()).sum::<usize>(), 50);
        assert!(scenario.tasks.iter().all(|t| t.classes.len() == 10));
        let err = build(ScenarioSpec::Instances { num_tasks: 0 }, Default::default()).unwrap_err();
        assert!(err.to_string().contains("at least 1"));
        let err = build(ScenarioSpec::Instances { num_tasks: 51 }, Default::default()).unwrap_err();
        assert!(err.to_string().contains("exceeds the 50 samples"), "{err}");
    }

    #[test]
    fn permutations_are_seeded_distinct_and_task_zero_is_unpermuted() {
        let scenario = build(ScenarioSpec::Permuted { num_tasks: 3 }, Default::default()).unwrap();
        assert_eq!(scenario.views[0], View::Identity);
        let View::Permutation(p1) = &scenario.views[1] else {
            panic!("task 1 is not permuted")
        };
        let View::Permutation(p2) = &scenario.views[2] else {
            panic!("task 2 is not permuted")
        };
        assert_ne!(p1, p2);
        let mut sorted = p1.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2, 3]);
        assert!(scenario.tasks[2].train.iter().all(|s| s.view == 2));
        assert_eq!(scenario.tasks[2].train.len(), 100);
        let again = build(ScenarioSpec::Permuted { num_tasks: 3 }, Default::default()).unwrap();
        assert_eq!(scenario.views, again.views);
    }

    #[test]
    fn rotations_by_right_angles_move_pixels_exactly() {
        // A 2x2 plane [a b; c d]: output pixel i reads the taps of weight 1.
        let source_of = |degrees| -> Vec<u32> {
            Resampling::rotation(2, 2, degrees)
                .taps
                .iter()
                .map(|taps| {
                    let full: Vec<_> = taps.iter().filter(|(_, w)| (*w - 1.0).abs() < 1e-6).collect();
                    assert_eq!(full.len(), 1, "{taps:?}");
                    full[0].0
                })
                .collect()
        };
        assert_eq!(source_of(0.0), vec![0, 1, 2, 3]);
        assert_eq!(source_of(180.0), vec![3, 2, 1, 0]);
        let quarter = source_of(90.0);
        assert_ne!(quarter, vec![0, 1, 2, 3]);
        let mut sorted = quarter.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2, 3], "a right angle permutes the pixels");
    }

    #[test]
    fn other_angles_blend_neighbours_and_read_black_outside() {
        let rotation = Resampling::rotation(5, 5, 30.0);
        for taps in &rotation.taps {
            let total: f32 = taps.iter().map(|(_, w)| w).sum();
            assert!((total - 1.0).abs() < 1e-5);
        }
        assert!(
            rotation.taps[0]
                .iter()
                .any(|(i, w)| *i == Resampling::OUTSIDE && *w > 0.0),
            "a corner leaves the image"
        );
        let scenario = build(
            ScenarioSpec::Rotated {
                angles: vec![0.0, 45.0],
            },
            Default::default(),
        )
        .unwrap();
        assert_eq!(scenario.tasks.len(), 2);
        assert!(matches!(scenario.views[1], View::Resampled(_)));
        assert!(scenario.tasks[1].train.iter().all(|s| s.view == 1));
    }

    #[test]
    fn concatenation_trains_each_task_on_all_earlier_ones() {
        let options = ScenarioOptions {
            concatenate: true,
            ..Default::default()
        };
        let scenario = build(classes(2, 2, ClassOrder::Natural, TaskIdentity::Unknown), options).unwrap();
        let sizes: Vec<_> = scenario.tasks.iter().map(|t| t.train.len()).collect();
        assert_eq!(sizes, vec![20, 40, 60, 80, 100]);
        assert_eq!(scenario.tasks[4].test.len(), 10, "test sets stay per task");
    }

    #[test]
    fn the_train_and_test_limits_apply_before_splitting() {
        let options = ScenarioOptions {
            train_limit: Some(30),
            test_limit: Some(7),
            ..Default::default()
        };
        let scenario = build(ScenarioSpec::Single, options).unwrap();
        assert_eq!(scenario.tasks[0].train.len(), 30);
        assert_eq!(scenario.tasks[0].test.len(), 7);
        let options = ScenarioOptions {
            train_limit: Some(5),
            ..Default::default()
        };
        let err = build(classes(2, 2, ClassOrder::Natural, TaskIdentity::Unknown), options).unwrap_err();
        // The first five samples are of classes 0..5: task 4 (classes 6 and 7) gets none.
        assert!(err.to_string().contains("task 4 has no training sample"), "{err}");
    }
}
