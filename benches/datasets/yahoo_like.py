"""Yahoo A3/A4-like: 30 hourly series, seasonal (12/24/48 and 168 rows) with
0-3 trend and level changes, 3-10 anomalies each: 85% single-row outliers of
5-15 noise sigmas, 15% 3-10-row bumps of 4 sigmas. With --split, each series
is twice as long and its first half becomes the train file (outliers and
all: train files that hold the anomalies to be found).

    python3 benches/datasets/yahoo_like.py OUTDIR [SEED] [--split]   (SEED 11)
"""
import math,random,json,os,sys
random.seed(int(sys.argv[2]) if len(sys.argv)>2 else 11)
root=sys.argv[1]; split='--split' in sys.argv
for d in ['data/Y','labels']+(['train/Y'] if split else []): os.makedirs(f'{root}/{d}',exist_ok=True)
labels={}
for s in range(30):
    n=1680 if not split else 3360; t0=1416700000
    amp=random.uniform(1,5); noise=random.uniform(.1,.5)
    p1=random.choice([12,24,48]); ph=random.uniform(0,6)
    vals=[]; level=0; slope=random.uniform(-1,1)*amp/n
    cps=sorted(random.sample(range(100,n-100),random.randint(0,3)))
    for i in range(n):
        if i in cps: slope=random.uniform(-2,2)*amp/n; level+=random.uniform(-1,1)*amp*0.3
        level+=slope
        vals.append(level+amp*math.sin(2*math.pi*i/p1+ph)+0.3*amp*math.sin(2*math.pi*i/168)+random.gauss(0,noise))
    k=random.randint(3,10)*(2 if split else 1); pts=sorted(random.sample(range(50,n-20),k))
    wins=[]
    for p in pts:
        if random.random()<0.85:
            vals[p]+=random.choice([-1,1])*random.uniform(5,15)*noise
            wins.append((p,p))
        else:
            L=random.randint(3,10)
            for q in range(p,p+L): vals[q]+=random.choice([-1,1])*4*noise
            wins.append((p,p+L-1))
    h=n//2 if split else 0
    name=f'Y/s{s}.csv'
    def write(path,a,b):
        with open(path,'w') as f:
            f.write('timestamp,value\n')
            for i in range(a,b): f.write(f'{t0+3600*i},{vals[i]:.5f}\n')
    if split: write(f'{root}/train/{name}',0,h)
    write(f'{root}/data/{name}',h,n)
    labels[name]=[[t0+3600*a,t0+3600*b] for a,b in wins if a>=h]
json.dump(labels,open(f'{root}/labels/combined_windows.json','w'))
print(sum(len(w) for w in labels.values()),'windows')
