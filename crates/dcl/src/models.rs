//! `dcl models`: every model of the registry with its `--model-config` keys and its number
//! of parameters for a given input (counted as PyTorch's `sum(p.numel() for p in
//! model.parameters())`: BatchNorm statistics excluded).

use anyhow::Result;
use dcl_models::{ModelConfig, ModelInput, MODELS};

use crate::cli::ModelsArgs;

/// Prints the table of models.
pub fn run(args: ModelsArgs) -> Result<()> {
    let input = ModelInput {
        image_shape: args.input,
        num_classes: args.num_classes,
    };
    let [c, h, w] = args.input;
    println!("models for {c}x{h}x{w} images and {} classes", args.num_classes);
    println!("{:<16}{:>14}  model-config keys", "model", "parameters");
    let mut refused = false;
    for entry in MODELS {
        let count = match dcl_models::parameter_count(entry.name, input, &ModelConfig::default()) {
            Ok(n) => group_thousands(n),
            Err(_) => {
                refused = true;
                "-".to_owned()
            }
        };
        let keys: Vec<String> = entry
            .keys
            .iter()
            .map(|k| k.describe())
            .chain(std::iter::once("weights: FILE.safetensors".to_owned()))
            .collect();
        println!("{:<16}{:>14}  {}", entry.name, count, keys.join(", "));
    }
    if refused {
        println!("-: the model does not take {c}x{h}x{w} images");
    }
    Ok(())
}

/// `11689512` as `11,689,512`.
fn group_thousands(n: i64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group_thousands(11_689_512), "11,689,512");
        assert_eq!(group_thousands(512), "512");
        assert_eq!(group_thousands(1_000), "1,000");
    }
}
