"""SMD-like: 3 machines of 38 channels, each a sine of its own period
(50-500 rows), phase and amplitude (0-1) with noise; the first 5 channels
are constant (as idle sensors are). A clean train file of 28,000 rows and a
test file of as many more, holding 4 anomalies of 10-200 rows each: 5
random channels shifted by 0.5-1.5.

    python3 benches/datasets/multichannel.py OUTDIR [SEED]   (SEED 3)
"""
import math,random,json,os,sys
random.seed(int(sys.argv[2]) if len(sys.argv)>2 else 3)
root=sys.argv[1]
for d in ['data/m','train/m','labels']: os.makedirs(f'{root}/{d}',exist_ok=True)
labels={}
N,F,IDLE=28000,38,5
for s in range(3):
    chans=[(random.uniform(50,500),random.uniform(0,6),random.uniform(0,1)) for _ in range(F)]
    def row(t):
        return [0.0 if c<IDLE else a*math.sin(2*math.pi*t/p+ph)+random.gauss(0,0.05)
                for c,(p,ph,a) in enumerate(chans)]
    train=[row(t) for t in range(N)]
    test=[row(t) for t in range(N,2*N)]
    wins=[]
    for a in random.sample(range(1000,N-500),4):
        L=random.randint(10,199); size=random.uniform(0.5,1.5)
        for c in random.sample(range(F),5):
            for i in range(a,a+L): test[i][c]+=size
        wins.append([a,a+L-1])
    for part,rows in (('train',train),('data',test)):
        with open(f'{root}/{part}/m/s{s}.csv','w') as f:
            f.write('timestamp,'+','.join(f'c{i}' for i in range(F))+'\n')
            for i,r in enumerate(rows): f.write(str(i)+','+','.join(f'{v:.4f}' for v in r)+'\n')
    labels[f'm/s{s}.csv']=sorted(wins)
json.dump(labels,open(f'{root}/labels/combined_windows.json','w'))
print(sum(len(w) for w in labels.values()),'windows')
