"""Point outliers: 15 hourly series of 1500 rows (daily and weekly seasonality,
a trend, noise) with 2-6 anomalies each, 70% single-row outliers labelled
[t, t] and 30% 6-row level bumps. Orion's form of Yahoo S5 A1, roughly.

    python3 benches/datasets/point_outliers.py OUTDIR
"""
import math,random,json,os,sys
random.seed(7)
root=sys.argv[1]
for d in ['data/A','labels']: os.makedirs(f'{root}/{d}',exist_ok=True)
labels={}
for s in range(15):
    n=1500; t0=1416700000
    amp=random.uniform(1,5); noise=random.uniform(.1,.4); tr=random.uniform(-1,1)/n
    vals=[amp*math.sin(2*math.pi*i/24)+0.5*amp*math.sin(2*math.pi*i/168)+tr*i+random.gauss(0,noise) for i in range(n)]
    k=random.randint(2,6); pts=sorted(random.sample(range(300,n-20),k))
    wins=[]
    for p in pts:
        if random.random()<0.7:
            vals[p]+=random.choice([-1,1])*random.uniform(4,8)*noise*3
            wins.append([t0+3600*p,t0+3600*p])
        else:
            for q in range(p,p+6): vals[q]+=2.5*noise*3
            wins.append([t0+3600*p,t0+3600*(p+5)])
    name=f'A/real_{s}.csv'
    with open(f'{root}/data/{name}','w') as f:
        f.write('timestamp,value\n')
        for i,v in enumerate(vals): f.write(f'{t0+3600*i},{v:.5f}\n')
    labels[name]=wins
json.dump(labels,open(f'{root}/labels/combined_windows.json','w'))
print(sum(len(w) for w in labels.values()),'windows')
