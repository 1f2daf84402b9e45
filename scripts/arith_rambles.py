"""Counts, per round of an improve run, the verified arithmetic samples that verdict rules v5
would refuse (a false equation, or more than 8 words of prose besides the equations): an
approximation in Python of `working_holds` in crates/improve/src/arithmetic.rs, over training
samples only. Usage: python3 scripts/arith_rambles.py [REGISTRY] [RUN]"""
import sys
import sqlite3,re,json,collections
import os
db=sqlite3.connect(sys.argv[1] if len(sys.argv)>1 else os.path.expanduser('~/.autodidact/improve/registry.sqlite'))
RUN=sys.argv[2] if len(sys.argv)>2 else 'run-1796648285'
rows=db.execute("select s.round, s.text, t.task from samples s join tasks t on t.run=s.run and t.round=s.round and t.id=s.task where s.run=? and s.pass=1",(RUN,)).fetchall()
EQ=re.compile(r'(-?\d+)\s*([+\-×x*]|plus|minus|times)\s*(-?\d+)\s*(=|is|equals)\s*(-?\d+)')
def ok(text):
    bad=False
    for a,op,b,_,c in EQ.findall(text):
        a,b,c=int(a),int(b),int(c)
        v={'+':a+b,'plus':a+b,'-':a-b,'minus':a-b,'×':a*b,'x':a*b,'*':a*b,'times':a*b}[op]
        if v!=c: return False,'false eq'
    rest=EQ.sub(' ',text)
    words=[w for w in re.findall(r"[A-Za-z']+",rest)]
    if len(words)>8: return False,'prose %d'%len(words)
    return True,''
c=collections.Counter(); ex=collections.defaultdict(list)
for r,text,task in rows:
    k,why=ok(text)
    c[(r,k)]+=1
    if not k and len(ex[r])<3: ex[r].append((why,text[:100]))
for r in range(7): print(r, c[(r,True)], c[(r,False)])
for r in ex: print(r, ex[r])
