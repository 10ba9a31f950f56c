"""NAB's five scored groups with train files: each series' first half becomes
its train file, the second half the series, with the labels that reach it.

    python3 benches/datasets/nab_halves.py NAB_DIR OUTDIR
"""
import json,os,csv,datetime
import sys
src, dst = sys.argv[1], sys.argv[2]
groups=['artificialWithAnomaly','realAWSCloudwatch','realAdExchange','realTraffic','realTweets']
labels=json.load(open(f'{src}/labels/combined_windows.json'))
out={}
for key,wins in labels.items():
    g=key.split('/')[0]
    if g not in groups: continue
    rows=open(f'{src}/data/{key}').read().splitlines()
    head,body=rows[0],rows[1:]
    h=len(body)//2
    for part,chunk in (('train',body[:h]),('data',body[h:])):
        os.makedirs(os.path.dirname(f'{dst}/{part}/{key}'),exist_ok=True)
        open(f'{dst}/{part}/{key}','w').write('\n'.join([head]+chunk)+'\n')
    first=body[h].split(',')[0]
    t0=datetime.datetime.fromisoformat(first)
    out[key]=[w for w in wins if datetime.datetime.fromisoformat(w[1].split('.')[0])>=t0]
os.makedirs(f'{dst}/labels',exist_ok=True)
json.dump(out,open(f'{dst}/labels/combined_windows.json','w'))
print(sum(len(v) for v in out.values()),'windows')
