"""UCR-anomaly-archive-like: 20 quasi-periodic recordings of 15-60k rows (each
cycle of 40-400 rows a few Gaussian bumps, +-5% jitter, noise), a clean
train file of the first 20-40%, and one anomaly of one or two cycles in the
rest (amplified, a missing bump, flat, noisy, or played twice as fast).

    python3 benches/datasets/ucr_like.py OUTDIR [SEED]   (SEED 7)
"""
import math,random,json,os,sys
random.seed(int(sys.argv[2]) if len(sys.argv)>2 else 7)
root=sys.argv[1]
for d in ['data/U','train/U','labels']: os.makedirs(f'{root}/{d}',exist_ok=True)
labels={}
def beat(phase,shape):
    # one cycle: a couple of gaussian bumps (ECG/gait-like)
    return sum(a*math.exp(-((phase-c)/w)**2) for a,c,w in shape)
for s in range(20):
    P=random.randint(40,400); n=random.randint(15000,60000)
    shape=[(random.uniform(0.5,2),random.uniform(0.1,0.9),random.uniform(0.02,0.1)) for _ in range(random.randint(2,4))]
    noise=random.uniform(0.01,0.05)
    jitter=[random.uniform(0.95,1.05) for _ in range(n//P+10)]
    v=[];t=0.0;cyc=0
    while len(v)<n:
        L=int(P*jitter[cyc%len(jitter)])
        for i in range(L): v.append(beat(i/L,shape))
        cyc+=1
    v=v[:n]
    tr=int(n*random.uniform(0.2,0.4))
    a=random.randint(tr+P*5,n-P*5); kind=random.choice(['amp','missing','flat','noise','fast'])
    L=P*random.randint(1,2)
    if kind=='amp':
        for j in range(a,a+L): v[j]*=1.6
    elif kind=='missing':
        big=max(shape); 
        for j in range(a,a+L): v[j]-=big[0]*math.exp(-((((j-a)%P)/P-big[1])/big[2])**2)
    elif kind=='flat':
        for j in range(a,a+L): v[j]=v[a]
    elif kind=='noise':
        for j in range(a,a+L): v[j]+=random.gauss(0,0.3)
    else:
        for j in range(a,a+L): v[j]=v[a+((j-a)*2)%L]
    v=[x+random.gauss(0,noise) for x in v]
    t0=1_600_000_000
    with open(f'{root}/train/U/u{s}.csv','w') as f:
        f.write('timestamp,value\n'); f.writelines(f'{t0+i},{v[i]:.4f}\n' for i in range(tr))
    with open(f'{root}/data/U/u{s}.csv','w') as f:
        f.write('timestamp,value\n'); f.writelines(f'{t0+i},{v[i]:.4f}\n' for i in range(tr,n))
    labels[f'U/u{s}.csv']=[[t0+a,t0+a+L-1]]
    print(s,P,n,tr,kind,L)
json.dump(labels,open(f'{root}/labels/combined_windows.json','w'))
