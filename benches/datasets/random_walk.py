"""Random walks: 20 series of 5-minute rows (3000-6000) whose level wanders
(a Gaussian random walk) under a daily cycle and noise, with 1-3 anomalies
each in the last 70%: single-row spikes of 24-45 step sigmas, or 20-80-row
level shifts of 10-20. The first 30% is the train file; without --no-train
the series' rows follow it. A set whose level means nothing, to measure
`--center`.

    python3 benches/datasets/random_walk.py OUTDIR [SEED] [--no-train]   (SEED 3)
"""
import math,random,json,os,sys
args=[a for a in sys.argv[1:] if not a.startswith('--')]
random.seed(int(args[1]) if len(args)>1 else 3)
root=args[0]; with_train='--no-train' not in sys.argv
for d in ['data/R','labels']+(['train/R'] if with_train else []): os.makedirs(f'{root}/{d}',exist_ok=True)
labels={}
for s in range(20):
    n=random.randint(3000,6000); t0=1500000000
    x=0; v=[]; amp=random.uniform(0,2); sig=random.uniform(0.05,0.2)
    for i in range(n):
        x+=random.gauss(0,sig)
        v.append(x+amp*math.sin(2*math.pi*i/288)+random.gauss(0,sig))
    h=int(n*0.3); wins=[]
    for _ in range(random.randint(1,3)):
        a=random.randint(h+100,n-100)
        if random.random()<0.5:
            v[a]+=random.choice([-1,1])*random.uniform(8,15)*sig*3; wins.append((a,a))
        else:
            L=random.randint(20,80); d=random.choice([-1,1])*random.uniform(10,20)*sig
            for q in range(a,a+L): v[q]+=d
            wins.append((a,a+L-1))
    def write(path,a,b):
        with open(path,'w') as f:
            f.write('timestamp,value\n')
            for i in range(a,b): f.write(f'{t0+300*i},{v[i]:.5f}\n')
    if with_train:
        write(f'{root}/train/R/r{s}.csv',0,h)
    write(f'{root}/data/R/r{s}.csv',h,n)
    labels[f'R/r{s}.csv']=[[t0+300*a,t0+300*b] for a,b in wins]
json.dump(labels,open(f'{root}/labels/combined_windows.json','w'))
print(sum(len(w) for w in labels.values()),'windows')
