//! The learning rate of each epoch's first step under the write-up's StepLR and under one-cycle
//! (469 steps an epoch: MNIST's 60,000 images in batches of 128), over 15 epochs.
#![allow(clippy::print_stdout)] // an example program: printing is its job

use under8k_sched::{Schedule, ScheduleError};

fn main() -> Result<(), ScheduleError> {
    let (epochs, steps) = (15, 469);
    let step = Schedule::geometric_from_decrement(0.07, 0.1, epochs)?;
    let cycle = Schedule::one_cycle(0.1, epochs * steps)?;
    println!("epoch  StepLR      one-cycle");
    for e in 0..epochs {
        println!(
            "{:>5}  {:.6}  {:.6}",
            e + 1,
            step.lr(e, e * steps),
            cycle.lr(e, e * steps)
        );
    }
    Ok(())
}
