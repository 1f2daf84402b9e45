use autodidact_kernels::quant::dequantize_to_vec;
use autodidact_model::gguf::GgufFile;
use std::io::Write;
fn main() {
    let g = GgufFile::open("/tmp/gemma.gguf").unwrap();
    for name in [
        "blk.0.attn_q.weight",
        "blk.0.attn_output.weight",
        "blk.0.ffn_down.weight",
        "blk.0.attn_v.weight",
        "blk.1.ffn_down.weight",
        "blk.0.attn_norm.weight",
    ] {
        let (info, data) = g.tensor_data(name).unwrap();
        let v = dequantize_to_vec(info.ty, data, info.n_elements() as usize).unwrap();
        let mut f = std::fs::File::create(format!("/tmp/{name}.bin")).unwrap();
        for x in &v {
            f.write_all(&x.to_le_bytes()).unwrap();
        }
        println!("{name} {:?}", info.ty);
    }
}
