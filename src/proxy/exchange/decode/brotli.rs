//! `br` as a [`Stage`], on brotli-decompressor's streaming interface. Standard windows
//! only (at most 16 MiB, RFC 7932): the large-window variant is not `br`.

use brotli_decompressor::{BrotliDecompressStream, BrotliResult, BrotliState, StandardAlloc};

use super::chain::Stage;

/// A brotli stream being decoded.
pub struct Brotli {
    state: Box<BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>>,
    ended: bool,
}

impl Default for Brotli {
    fn default() -> Brotli {
        let state = BrotliState::new_strict(
            StandardAlloc::default(),
            StandardAlloc::default(),
            StandardAlloc::default(),
        );
        Brotli {
            state: Box::new(state),
            ended: false,
        }
    }
}

impl Stage for Brotli {
    fn decode(&mut self, input: &[u8], output: &mut [u8]) -> Result<(usize, usize), String> {
        if self.ended {
            return match input.is_empty() {
                true => Ok((0, 0)),
                false => Err("data after the end of the brotli stream".into()),
            };
        }
        let (mut available_in, mut input_offset) = (input.len(), 0);
        let (mut available_out, mut output_offset, mut total) = (output.len(), 0, 0);
        let result = BrotliDecompressStream(
            &mut available_in,
            &mut input_offset,
            input,
            &mut available_out,
            &mut output_offset,
            output,
            &mut total,
            &mut self.state,
        );
        match result {
            BrotliResult::ResultFailure => Err(format!("brotli error {:?}", self.state.error_code)),
            BrotliResult::ResultSuccess => {
                self.ended = true;
                Ok((input_offset, output_offset))
            }
            BrotliResult::NeedsMoreInput | BrotliResult::NeedsMoreOutput => {
                Ok((input_offset, output_offset))
            }
        }
    }

    fn done(&self) -> bool {
        self.ended
    }
}
