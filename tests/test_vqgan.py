"VQGAN discretiser: interface, taming-transformers checkpoint conversion, safe loading, errors."
import re, argparse
import pytest, torch
from robust_nb.vqgan import (VQDiscretiser, vq_model, taming_to_diffusers, taming_config, load_taming_vqgan,
                             load_state_dict, save_vq, load_vq, vq_loss)

# A tiny VQGAN with every block kind taming has: attention inside a level (encoder level 2, decoder level 2),
# mid-block attention, channel-changing resnets (nin_shortcut), down/upsamplers, 3 levels (f=4).
CFG = dict(block_out_channels=(8, 16, 16), layers_per_block=1, latent_channels=4, vq_embed_dim=3, num_vq_embeddings=32,
           norm_num_groups=4, down_block_types=('DownEncoderBlock2D', 'DownEncoderBlock2D', 'AttnDownEncoderBlock2D'),
           up_block_types=('AttnUpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'))

def tiny_vq(seed=0):
    torch.manual_seed(seed)
    vq = vq_model(CFG)
    with torch.no_grad():  # non-trivial norms/biases so that a wrong mapping changes outputs
        for p in vq.parameters(): p.add_(0.05 * torch.randn_like(p))
    return vq.eval()

def to_taming(sd, L):
    "Inverse of the conversion, written from taming's module names (model.py: Encoder/Decoder/ResnetBlock/AttnBlock)."
    out = {}
    for k, v in sd.items():
        n = k
        m = re.match(r'decoder\.up_blocks\.(\d+)\.(.*)', n)
        if m: n = f'decoder.up.{L-1-int(m.group(1))}.{m.group(2)}'   # taming: up[0] is the full-resolution level
        n = re.sub(r'encoder\.down_blocks\.', 'encoder.down.', n)
        n = n.replace('.resnets.', '.block.').replace('.attentions.', '.attn.')
        n = n.replace('.downsamplers.0.', '.downsample.').replace('.upsamplers.0.', '.upsample.')
        n = re.sub(r'mid_block\.block\.(\d)\.', lambda m: f'mid.block_{int(m.group(1))+1}.', n)
        n = n.replace('mid_block.attn.0.', 'mid.attn_1.')
        n = n.replace('conv_norm_out', 'norm_out').replace('conv_shortcut', 'nin_shortcut')
        n = n.replace('.group_norm.', '.norm.').replace('.to_q.', '.q.').replace('.to_k.', '.k.').replace('.to_v.', '.v.')
        n = n.replace('.to_out.0.', '.proj_out.')
        if re.search(r'\.(q|k|v|proj_out)\.weight$', n): v = v[:, :, None, None]  # taming's attention uses 1x1 convs
        out[n] = v.clone()
    return out

@pytest.fixture
def taming_ckpt(tmp_path):
    vq = tiny_vq()
    tsd = to_taming(vq.state_dict(), L=3)
    # facts about taming's layout the inverse map must reproduce
    assert 'decoder.up.0.upsample.conv.weight' not in tsd and 'decoder.up.2.upsample.conv.weight' in tsd
    assert 'encoder.down.2.downsample.conv.weight' not in tsd and 'encoder.mid.attn_1.q.weight' in tsd
    assert tsd['encoder.mid.attn_1.proj_out.weight'].shape == (16, 16, 1, 1)
    assert 'decoder.up.2.attn.0.norm.weight' in tsd and 'encoder.down.1.block.0.nin_shortcut.weight' in tsd
    tsd['loss.discriminator.main.0.weight'] = torch.randn(4, 3, 4, 4)   # Lightning ckpts also carry the GAN loss
    path = tmp_path / 'last.ckpt'
    torch.save({'state_dict': tsd, 'epoch': 3, 'global_step': 1000}, path)
    return vq, tsd, path

def test_conversion_round_trip(taming_ckpt):
    vq, tsd, path = taming_ckpt
    q = load_taming_vqgan(path, norm_num_groups=4)
    ref = VQDiscretiser(vq)
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(q(x), ref(x), rtol=0, atol=1e-6)
        assert torch.equal(q.encode(x), ref.encode(x))
        torch.testing.assert_close(q.decode(ref.encode(x)), ref(x), rtol=0, atol=1e-5)  # STE z+(zq-z) rounding
    for k, v in vq.state_dict().items(): assert torch.equal(q.vq.state_dict()[k], v), k

def test_config_inferred_from_weights(taming_ckpt):
    _, tsd, _ = taming_ckpt
    cfg = taming_config(tsd, norm_num_groups=4)
    for k in ('block_out_channels', 'layers_per_block', 'latent_channels', 'vq_embed_dim', 'num_vq_embeddings',
              'down_block_types', 'up_block_types'):
        assert tuple(cfg[k]) if isinstance(cfg[k], tuple) else cfg[k] == CFG[k], k
    assert cfg['down_block_types'] == CFG['down_block_types'] and cfg['up_block_types'] == CFG['up_block_types']

def test_ldm_prefix_and_safetensors(taming_ckpt, tmp_path):
    from safetensors.torch import save_file
    vq, tsd, _ = taming_ckpt
    p = tmp_path / 'vq.safetensors'
    save_file({f'first_stage_model.{k}': v.contiguous() for k, v in tsd.items()}, str(p))
    q = load_taming_vqgan(p, norm_num_groups=4)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad(): torch.testing.assert_close(q(x), VQDiscretiser(vq)(x), rtol=0, atol=1e-6)

def test_conversion_names():
    sd = {'decoder.up.0.block.2.nin_shortcut.weight': torch.zeros(1), 'decoder.up.1.upsample.conv.bias': torch.zeros(1),
          'encoder.mid.attn_1.q.weight': torch.zeros(2, 2, 1, 1), 'encoder.norm_out.bias': torch.zeros(1),
          'decoder.mid.block_2.norm1.weight': torch.zeros(1), 'quantize.embedding.weight': torch.zeros(1),
          'decoder.up.3.attn.1.proj_out.bias': torch.zeros(1), 'loss.logvar': torch.zeros(1)}
    out = taming_to_diffusers(sd)
    assert set(out) == {'decoder.up_blocks.3.resnets.2.conv_shortcut.weight', 'decoder.up_blocks.2.upsamplers.0.conv.bias',
                        'encoder.mid_block.attentions.0.to_q.weight', 'encoder.conv_norm_out.bias',
                        'decoder.mid_block.resnets.1.norm1.weight', 'quantize.embedding.weight',
                        'decoder.up_blocks.0.attentions.1.to_out.0.bias'}
    assert out['encoder.mid_block.attentions.0.to_q.weight'].shape == (2, 2)

def test_errors(taming_ckpt, tmp_path):
    _, tsd, path = taming_ckpt
    with pytest.raises(FileNotFoundError, match='does not exist'): load_taming_vqgan(tmp_path / 'nope.ckpt')
    with pytest.raises(ValueError, match='missing keys') as e: load_taming_vqgan(path, config='vq-f8')
    assert 'config=None' in str(e.value)
    bad = tmp_path / 'hparams.ckpt'
    torch.save({'state_dict': tsd, 'hyper_parameters': argparse.Namespace(lr=1)}, bad)
    with pytest.raises(RuntimeError, match='weights_only') as e: load_state_dict(bad)
    assert "['state_dict']" in str(e.value)
    notvq = tmp_path / 'resnet.pt'
    torch.save({'conv1.weight': torch.zeros(1)}, notvq)
    with pytest.raises(KeyError, match='not a taming-transformers VQGAN'): load_taming_vqgan(notvq)

def test_discretiser_interface():
    q = VQDiscretiser(tiny_vq())
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad(): y = q(x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    idx = q.encode(x)
    assert idx.shape == (2, 4, 4) and idx.dtype == torch.int64 and idx.max() < 32
    with pytest.raises(ValueError, match='indices must lie'): q.decode(torch.full((1, 2, 2), 32))
    # gradients: identity (DAT's straight-through), full (through the VQGAN), none
    xg = x.clone().requires_grad_(); q(xg).mul(torch.arange(3.)[None, :, None, None]).sum().backward()
    torch.testing.assert_close(xg.grad, torch.arange(3.)[None, :, None, None].expand_as(x))
    q.grad = 'full'; xg = x.clone().requires_grad_(); q(xg).sum().backward()
    assert xg.grad.abs().sum() > 0 and not torch.allclose(xg.grad, torch.ones_like(x))
    q.grad = 'none'; assert not q(x.clone().requires_grad_()).requires_grad
    with pytest.raises(ValueError, match='grad must be'): VQDiscretiser(tiny_vq(), grad='bpda')

def test_save_load_and_loss(tmp_path):
    q = VQDiscretiser(tiny_vq())
    save_vq(q, tmp_path / 'q.safetensors')
    q2 = load_vq(tmp_path / 'q.safetensors')
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad(): torch.testing.assert_close(q2(x), q(x), rtol=0, atol=0)
    loss, logs = vq_loss(q, x)
    y, commit = q.reconstruct(x)
    torch.testing.assert_close(loss, (y - (2 * x - 1)).abs().mean() + commit)
    assert set(logs) == {'recon', 'commit'}

def test_train_vq_learns(tmp_path):
    "A few steps of train_vq on structured images beat the initial reconstruction error; codebook starts from encoder outputs."
    from robust_nb.vqgan import train_vq
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 1, 1, generator=g).expand(-1, -1, 8, 8).contiguous()    # flat colour patches
    cfg = dict(block_out_channels=(8, 8), down_block_types=('DownEncoderBlock2D',) * 2, up_block_types=('UpDecoderBlock2D',) * 2,
               layers_per_block=1, latent_channels=4, vq_embed_dim=4, num_vq_embeddings=32, norm_num_groups=4, mid_block_add_attention=False)
    torch.manual_seed(0)
    q0 = VQDiscretiser(vq_model(cfg))
    with torch.no_grad(): err0 = (q0(x) - x).abs().mean()
    q = train_vq((x,), config=cfg, epochs=15, batch_size=16, lr=3e-3, progress=False)
    with torch.no_grad(): err = (q(x) - x).abs().mean()
    assert err < 0.75 * err0 and q.grad == 'identity' and not q.training
    with pytest.raises(ValueError, match='normalised'): train_vq((x * 2 - 1,), config=cfg, epochs=1)

def test_load_errors_name_the_file(tmp_path):
    "A truncated or foreign safetensors file: safetensors alone says 'header too large' / 'incomplete metadata', with no file name."
    q = VQDiscretiser(tiny_vq()); save_vq(q, tmp_path / 'q.safetensors')
    data = (tmp_path / 'q.safetensors').read_bytes()
    (tmp_path / 'cut.safetensors').write_bytes(data[:-100])
    (tmp_path / 'junk.safetensors').write_bytes(b'this is not a safetensors file')
    for name in ('cut.safetensors', 'junk.safetensors'):
        for load in (load_vq, load_state_dict, load_taming_vqgan):
            with pytest.raises(RuntimeError, match=rf"could not read safetensors file .*{name}.*copy it again"): load(tmp_path / name)
    with pytest.raises(FileNotFoundError, match=r"nope\.safetensors does not exist"): load_vq(tmp_path / 'nope.safetensors')
