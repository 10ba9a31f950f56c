"""NASA-telemetry-like: 20 channels, piecewise-constant levels (a change every
20-300 rows is normal) with a slow oscillation; a clean train file of
2000-3000 rows and a test file of 2500-8000 rows holding 1-3 long anomalies
(stuck value, fast oscillation, shift). A guess at SMAP/MSL's shape, not
validated against them.

    python3 benches/datasets/nasa_like.py OUTDIR
"""
import random,json,os,math,sys
random.seed(5); root=sys.argv[1]
for d in ['data/T','train/T','labels']: os.makedirs(f'{root}/{d}',exist_ok=True)
labels={}
def series(n,anoms):
    v=[];lvl=random.choice([-1,0,1]);i=0;osc=random.uniform(50,200)
    while len(v)<n:
        dur=random.randint(20,300); lvl=random.choice([-1,-0.5,0,0.5,1])
        for _ in range(dur): v.append(lvl+0.3*math.sin(len(v)/osc*2*math.pi)+random.gauss(0,0.02))
    v=v[:n]
    wins=[]
    for _ in range(anoms):
        a=random.randint(300,n-400); L=random.randint(50,300); kind=random.random()
        for j in range(a,a+L):
            if kind<0.4: v[j]=v[a]            # stuck value
            elif kind<0.7: v[j]+=0.4*math.sin(j/3)  # fast oscillation
            else: v[j]+=random.choice([0.8,-0.8]) if j==a else v[j]-v[j-1]+v[j-1] # shift-like
        if kind>=0.7:
            for j in range(a,a+L): v[j]+=0.8
        wins.append((a,a+L-1))
    return v,wins
t0=1222819200
for s in range(20):
    tr,_=series(random.randint(2000,3000),0)
    te,w=series(random.randint(2500,8000),random.randint(1,3))
    for part,vals,off in (('train',tr,0),('data',te,len(tr))):
        with open(f'{root}/{part}/T/c{s}.csv','w') as f:
            f.write('timestamp,value\n')
            for i,x in enumerate(vals): f.write(f'{t0+21600*(i+off)},{x:.4f}\n')
    labels[f'T/c{s}.csv']=[[t0+21600*(a+len(tr)),t0+21600*(b+len(tr))] for a,b in w]
json.dump(labels,open(f'{root}/labels/combined_windows.json','w'))
print(sum(len(x) for x in labels.values()),'windows')
