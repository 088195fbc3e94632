"""Diagnostic: conv decoder vs per-unit mean-mel lookup for a trained mel_kmeans codec (20 held-out clips).

    .venv/bin/python recipes/probe_codec_lookup.py runs/codec/v1
"""
import sys
import torch, json, numpy as np
torch.set_num_threads(2)
from towers.codec import SpeechCodec
from towers.audio import load_audio
from towers.judges import WhisperJudge
from towers.scoring import wer
c=SpeechCodec.from_pretrained(sys.argv[1] if len(sys.argv) > 1 else 'runs/codec/v1')
V=c.vocab_size; S=torch.zeros(V,2,80); N=torch.zeros(V)
for l in list(open('runs/codec_data/train.jsonl'))[::3]:
    r=json.loads(l); x,_=load_audio(r['audio_filepath']); m=c.mel(torch.from_numpy(x)); u=c.encode(x,16000)
    T=len(u)*2; m=torch.cat([m, m[-1:].expand(max(0,T-len(m)),-1)])[:T].reshape(len(u),2,80)
    S.index_add_(0,u,m); N.index_add_(0,u,torch.ones(len(u)))
table=S/N.clamp_min(1)[:,None,None]
J=WhisperJudge(cpu_threads=2); refs=[];h={'orig':[],'dec':[],'lookup':[],'dec_smooth':[]}
for l in list(open('runs/codec_data/test.jsonl'))[::3]:
    r=json.loads(l); x,_=load_audio(r['audio_filepath']); u=c.encode(x,16000); refs.append(r['text'])
    pm=c.decode_mel(u); lm=table[u].reshape(-1,80)
    for k,mm in (('dec',pm),('lookup',lm)):
        w=c.vocoder(mm).numpy(); w=w/np.abs(w).max()*0.7; h[k].append(J.transcribe_one((w,16000)))
    h['orig'].append(J.transcribe_one((x,16000)))
    # real mel: how far is pm from it
    m=c.mel(torch.from_numpy(x)); T=min(len(m),len(pm))
    print(round((pm[:T]-m[:T]).abs().mean().item(),2), round((lm[:T]-m[:T]).abs().mean().item(),2), flush=True)
for k in ('orig','dec','lookup'): print(k, wer(refs,h[k]).wer)
