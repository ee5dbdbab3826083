//! The initial stock: built in, or read from a file shaped like `GET /inventory`.

use std::path::Path;

use stockroom_contract::{StockFile, StockLine};
use stockroom_domain::ProductName;

/// The stock loaded on first start when no file is given.
pub const DEFAULT_STOCK: [(&str, u64); 5] = [
    ("Laptop", 25),
    ("Phone", 50),
    ("Headphones", 100),
    ("Monitor", 30),
    ("Keyboard", 75),
];

pub fn default_stock() -> Vec<StockLine> {
    DEFAULT_STOCK
        .iter()
        .map(|(name, quantity)| StockLine {
            product_name: ProductName::new(name).expect("built-in names are valid"),
            quantity: *quantity,
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum StockFileError {
    #[error("cannot read stock file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "stock file {path} is not a valid stock document ({{\"inventory\":[{{\"productName\":\"Laptop\",\"quantity\":25}}]}}): {source}"
    )]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("stock file {path} names product {product} twice")]
    Duplicate { path: String, product: String },
}

/// Reads a stock file: `{"inventory":[{"productName":"Laptop","quantity":25}]}`.
/// Other fields of each item (as in a saved `GET /inventory`) are ignored.
pub fn read_stock_file(path: &Path) -> Result<Vec<StockLine>, StockFileError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| StockFileError::Read {
        path: display.clone(),
        source,
    })?;
    let file: StockFile = serde_json::from_str(&text).map_err(|source| StockFileError::Parse {
        path: display.clone(),
        source,
    })?;
    let mut seen = std::collections::BTreeSet::new();
    for line in &file.inventory {
        if !seen.insert(line.product_name.key()) {
            return Err(StockFileError::Duplicate {
                path: display,
                product: line.product_name.to_string(),
            });
        }
    }
    Ok(file.inventory)
}
