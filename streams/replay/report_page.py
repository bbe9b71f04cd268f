"""The report page: one HTML file, inline CSS and script, data embedded as JSON (no external assets)."""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d232a;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 6px;border-bottom:1px solid #ddd}
h3{font-size:14px;margin:14px 0 4px}.sub{color:#5b6570}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:12px}
.card{border:1px solid #e3e6ea;border-radius:6px;padding:8px}
svg{display:block;width:100%;height:auto}#timeline svg,#late svg{max-width:960px}svg text{font-size:11px;fill:#444}
table{border-collapse:collapse;font-size:12px;width:100%}td,th{border-bottom:1px solid #eee;padding:3px 6px;text-align:left;vertical-align:top}
.PROCEED{color:#1a7f37}.HOLD{color:#9a6700}.PAUSE{color:#bc4c00}.ROLLBACK{color:#cf222e}
.legend span{margin-right:12px}.sw{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
#js-errors{color:#cf222e}
</style></head>
<body>
<h1 id="title"></h1><div class="sub" id="summary"></div>
<div class="legend sub" id="legend"></div>
<pre id="js-errors"></pre>
<h2>Stage timeline</h2><div id="timeline" class="card"></div>
<h2>Health per stage</h2><div id="stages"></div>
<h2>Late data and dead letters</h2><div id="late" class="card"></div>
<h2>Decisions</h2><div id="decisions"></div>
<p class="sub" id="status">rendering...</p>
<script id="report-data" type="application/json">__DATA__</script>
<script>
"use strict";
window.onerror=function(msg,src,line){var e=document.getElementById("js-errors");e.textContent+="JS error: "+msg+" (line "+line+")\n";document.body.setAttribute("data-errors","1");};
(function(){
var D=JSON.parse(document.getElementById("report-data").textContent);
var NS="http://www.w3.org/2000/svg",charts=0,markers=0;
var COL={PROCEED:"#1a7f37",HOLD:"#d4a72c",PAUSE:"#bc4c00",ROLLBACK:"#cf222e"};
function el(tag,attrs,parent,text){var e=document.createElementNS(NS,tag);for(var k in attrs)e.setAttribute(k,attrs[k]);if(text!=null)e.textContent=text;if(parent)parent.appendChild(e);return e;}
function h(tag,parent,text,cls){var e=document.createElement(tag);if(text!=null)e.textContent=text;if(cls)e.className=cls;if(parent)parent.appendChild(e);return e;}
function iso(ms){return new Date(ms).toISOString().replace(".000Z","Z");}
function hm(ms){return new Date(ms).toISOString().substr(11,8);}
function fmt(v){if(v==null)return "-";var a=Math.abs(v);return a>=100?v.toFixed(0):a>=1?v.toFixed(2):v.toPrecision(3);}
var t0=D.range[0],t1=D.range[1];
var ts=D.health.map(function(r){return r.end;});
if(ts.length){t0=Math.min.apply(null,D.health.map(function(r){return r.start;}));t1=Math.max.apply(null,ts);}
D.decisions.concat(D.live).forEach(function(d){t1=Math.max(t1,d.window_end_ms);t0=Math.min(t0,d.window_end_ms);});
if(t1<=t0)t1=t0+1;
var W=640,H=200,L=52,R=12,T=14,B=26;
function xs(t){return L+(t-t0)/(t1-t0)*(W-L-R);}
function axes(svg,ymin,ymax,label){
  el("line",{x1:L,y1:H-B,x2:W-R,y2:H-B,stroke:"#999"},svg);el("line",{x1:L,y1:T,x2:L,y2:H-B,stroke:"#999"},svg);
  for(var i=0;i<=4;i++){var t=t0+(t1-t0)*i/4;el("text",{x:xs(t),y:H-8,"text-anchor":"middle"},svg,hm(t));}
  for(var j=0;j<=2;j++){var v=ymin+(ymax-ymin)*j/2,y=H-B-(H-B-T)*j/2;el("text",{x:L-4,y:y+4,"text-anchor":"end"},svg,fmt(v));el("line",{x1:L,y1:y,x2:W-R,y2:y,stroke:"#eee"},svg);}
  el("text",{x:L+4,y:T-2},svg,label);
}
function decisionMarks(svg,stage){
  var list=[];
  D.decisions.forEach(function(d){if(d.stage===stage)list.push([d,"replay",0]);});
  D.live.forEach(function(d){if(d.stage===stage)list.push([d,"live",1]);});
  D.operator.forEach(function(d){if(d.stage===stage)list.push([d,"operator",2]);});
  list.forEach(function(x){
    var d=x[0],X=xs(d.window_end_ms),g=el("g",{"class":"marker marker-"+x[1],"data-action":d.action},svg);
    el("line",{x1:X,y1:T,x2:X,y2:H-B,stroke:COL[d.action]||"#555","stroke-width":x[2]===1?1:2,"stroke-dasharray":x[2]===0?"":(x[2]===1?"4 3":"1 2")},g);
    var tip=x[1]+" "+d.action+" at "+iso(d.window_end_ms)+" ("+d.decision_id+")";
    d.reasons.forEach(function(r){if(r.verdict!=="pass")tip+="\n"+r.rule_id+" "+r.metric+": "+r.verdict+" observed "+fmt(r.observed)+" baseline "+fmt(r.baseline)+" threshold "+fmt(r.threshold)+" n="+r.sample_size;});
    if(d.note)tip+="\n"+d.note;
    el("title",{},g,tip);
    el("text",{x:X+2,y:T+10+12*x[2],fill:COL[d.action]||"#555"},g,d.action[0]+(x[1]==="live"?"\u2032":""));
    markers++;
  });
}
function chart(parent,stage,metric,rows,rules){
  var tr=rows.filter(function(r){return !r.baseline&&r.metrics[metric]!=null;});
  var bl=rows.filter(function(r){return r.baseline&&r.metrics[metric]!=null;});
  if(!tr.length&&!bl.length)return;
  var vals=tr.concat(bl).map(function(r){return r.metrics[metric];});
  var lines=[];
  rules.forEach(function(r){
    if(r.metric!==metric&&metric.indexOf(r.metric+":")!==0)return;
    if(r.relative)lines.push({rule:r,pts:bl.map(function(b){return [b.end,b.metrics[metric]*r.threshold];})});
    else lines.push({rule:r,pts:[[t0,r.threshold],[t1,r.threshold]]});
  });
  lines.forEach(function(l){l.pts.forEach(function(p){vals.push(p[1]);});});
  var ymin=Math.min(0,Math.min.apply(null,vals)),ymax=Math.max.apply(null,vals);if(ymax<=ymin)ymax=ymin+1;ymax*=1.08;
  function ys(v){return H-B-(v-ymin)/(ymax-ymin)*(H-B-T);}
  var card=h("div",parent,null,"card chart");card.setAttribute("data-metric",metric);
  var svg=el("svg",{viewBox:"0 0 "+W+" "+H,role:"img","aria-label":metric},card);
  axes(svg,ymin,ymax,metric);
  function path(pts,attrs){if(!pts.length)return;var d=pts.map(function(p,i){return (i?"L":"M")+xs(p[0]).toFixed(1)+","+ys(p[1]).toFixed(1);}).join("");attrs.d=d;attrs.fill="none";el("path",attrs,svg);}
  lines.forEach(function(l){path(l.pts,{stroke:COL[l.rule.action],"stroke-dasharray":"6 4","stroke-width":1,"class":"threshold"});});
  path(bl.map(function(r){return [r.end,r.metrics[metric]];}),{stroke:"#8c959f","stroke-width":1.5,"class":"baseline"});
  path(tr.map(function(r){return [r.end,r.metrics[metric]];}),{stroke:"#0969da","stroke-width":2,"class":"treated"});
  decisionMarks(svg,stage);
  charts++;
}
document.getElementById("title").textContent="Rollout "+D.rollout+": incident report";
var last=D.plans.length?D.plans[D.plans.length-1]:null;
document.getElementById("summary").textContent=(last?("firmware "+last.previous+" \u2192 "+last.target+", "):"")+
  "range "+iso(D.range[0])+" \u2013 "+iso(D.range[1])+", source "+D.source+", policy "+D.policy.version+
  " (window "+D.policy.window_ms/1000+" s, lateness "+D.policy.lateness_ms/1000+" s), "+D.events+" events, "+D.devices+" devices"+
  (D.notes.length?" \u2014 "+D.notes.join("; "):"");
var lg=document.getElementById("legend");
[["#0969da","treated (target version)"],["#8c959f","baseline (previous version)"],["#cf222e","threshold (dashed, colour = rule action)"]].forEach(function(x){var s=h("span",lg);var w=h("span",s,null,"sw");w.style.background=x[0];s.appendChild(document.createTextNode(x[1]));});
h("span",lg,"decision markers: solid = replay, dashed + \u2032 = live, dotted = operator; hover for reasons");
// stage timeline: one band per plan state between plan updates
(function(){
  var box=document.getElementById("timeline"),svg=el("svg",{viewBox:"0 0 "+W+" 70",role:"img","aria-label":"stage timeline"},box);
  var SC={ACTIVE:"#dafbe1",PAUSED:"#fff1c2",ROLLING_BACK:"#ffd8d3",ROLLED_BACK:"#ffc1ba",COMPLETED:"#ddf4ff"};
  D.plans.forEach(function(p,i){
    var a=Math.max(p.t,t0),b=i+1<D.plans.length?Math.max(D.plans[i+1].t,t0):t1;if(b<a)return;
    var g=el("g",{"class":"stage-band"},svg);
    el("rect",{x:xs(a),y:8,width:Math.max(1,xs(b)-xs(a)),height:30,fill:SC[p.state]||"#eee",stroke:"#fff"},g);
    el("text",{x:xs(a)+3,y:27},g,(p.stages[p.stage]||("stage "+p.stage))+" "+p.state);
    el("title",{},g,iso(p.t)+": stage "+p.stage+" ("+(p.stages[p.stage]||"")+") "+p.state);
  });
  for(var i=0;i<=4;i++){var t=t0+(t1-t0)*i/4;el("text",{x:xs(t),y:60,"text-anchor":"middle"},svg,hm(t));}
  charts++;
})();
// health charts per stage
var stagesBox=document.getElementById("stages"),byStage={};
D.health.forEach(function(r){(byStage[r.stage]=byStage[r.stage]||[]).push(r);});
Object.keys(byStage).sort(function(a,b){return a-b;}).forEach(function(s){
  var rows=byStage[s],st=+s;
  var sec=h("section",stagesBox);sec.setAttribute("data-stage",s);
  h("h3",sec,"Stage "+s+": "+rows[0].stage_name);
  var grid=h("div",sec,null,"grid"),names={};
  rows.forEach(function(r){for(var k in r.metrics)names[k]=1;});
  Object.keys(names).sort().forEach(function(m){chart(grid,st,m,rows,D.rules);});
});
if(!D.health.length)h("p",stagesBox,"No window was evaluated for this rollout in the range.");
// late data and dead letters per window
(function(){
  var box=document.getElementById("late"),per={};
  D.health.forEach(function(r){var k=r.start;per[k]=per[k]||{late:0,dead:0};per[k].late+=r.late;});
  var dl=0,late=0;D.dead_letters.forEach(function(d){var k=d.start;per[k]=per[k]||{late:0,dead:0};per[k].dead+=d.count;dl+=d.count;});
  Object.keys(per).forEach(function(k){late+=per[k].late;});
  h("div",box,"late events (counted in their closed windows): "+late+"; dead letters (undecodable input): "+dl,"sub").id="late-summary";
  var svg=el("svg",{viewBox:"0 0 "+W+" "+H,role:"img","aria-label":"late and dead letters"},box);
  var ks=Object.keys(per).map(Number).sort(function(a,b){return a-b;});
  var ymax=1;ks.forEach(function(k){ymax=Math.max(ymax,per[k].late,per[k].dead);});
  axes(svg,0,ymax,"per window: late events (purple), dead letters (black)");
  var bw=Math.max(2,(W-L-R)/Math.max(ks.length,1)/3);
  ks.forEach(function(k){
    [["late","#8250df",0],["dead","#24292f",1]].forEach(function(x){var v=per[k][x[0]];if(!v)return;
      var y=H-B-v/ymax*(H-B-T);var r=el("rect",{x:xs(k)+x[2]*bw,y:y,width:bw,height:H-B-y,fill:x[1]},svg);el("title",{},r,iso(k)+": "+v+" "+x[0]);});
  });
  charts++;
  if(D.dead_letters.length){var t=h("table",box),tr=h("tr",t);["window","topic","reason","count"].forEach(function(c){h("th",tr,c);});
    D.dead_letters.forEach(function(d){var r=h("tr",t);[iso(d.start),d.topic,d.reason,d.count].forEach(function(c){h("td",r,String(c));});});}
})();
// decisions table with every non-passing reason
(function(){
  var box=document.getElementById("decisions"),t=h("table",box),tr=h("tr",t);
  ["window end","origin","stage","action","reasons","id"].forEach(function(c){h("th",tr,c);});
  D.decisions.concat(D.live,D.operator).sort(function(a,b){return a.window_end_ms-b.window_end_ms;}).forEach(function(d){
    var r=h("tr",t);r.className="decision-row";
    h("td",r,iso(d.window_end_ms));h("td",r,d.origin);h("td",r,String(d.stage)+" "+d.stage_name);h("td",r,d.action,d.action);
    var rs=d.reasons.filter(function(x){return x.verdict!=="pass";}).map(function(x){return x.rule_id+" ("+x.metric+"): "+x.verdict+", observed "+fmt(x.observed)+(x.baseline!=null?" vs baseline "+fmt(x.baseline):"")+", threshold "+fmt(x.threshold)+", n="+x.sample_size+(x.detail?" \u2014 "+x.detail:"");});
    if(d.note)rs.push(d.note);
    h("td",r,rs.join("\n")||"all rules pass").style.whiteSpace="pre-line";h("td",r,d.decision_id);
  });
})();
var st=document.getElementById("status");
st.textContent="rendered "+charts+" charts, "+markers+" decision markers";
document.body.setAttribute("data-rendered",String(charts));
document.body.setAttribute("data-markers",String(markers));
})();
</script>
</body></html>
"""
