// Package e2e drives a Kubernetes control plane that runs on a 3-member hub
// cluster (control-plane.sh) with client-go: namespaces, ConfigMaps and Secrets,
// a Deployment scheduled, scaled and deleted with cascading deletion, a watch
// that must see every event in order, a paginated list at one resourceVersion,
// 410 Gone after the apiserver's compaction, and the scheduler's and
// controller-manager's leader-election Leases renewing. The hub leader is
// killed with SIGKILL in the middle; the test must pass all the same and find
// every object written before the kill.
//
// Run it with e2e.sh, or against a running control-plane.sh with
// HUB_K8S_ENV=<its dir>/env go test ./e2e.
package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

// env is what control-plane.sh wrote about the cluster it started.
type env struct {
	kubeconfig string
	endpoints  []string
	pids       []int
}

func loadEnv(t *testing.T) env {
	path := os.Getenv("HUB_K8S_ENV")
	if path == "" {
		t.Skip("HUB_K8S_ENV is not set: run tests/kubernetes/e2e.sh")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vars := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), "="); ok {
			vars[k] = v
		}
	}
	e := env{kubeconfig: vars["KUBECONFIG"], endpoints: strings.Split(vars["HUB_ENDPOINTS"], ",")}
	for _, p := range strings.Split(vars["HUB_PIDS"], ",") {
		pid, err := strconv.Atoi(p)
		if err != nil {
			t.Fatalf("HUB_PIDS in %s: %v", path, err)
		}
		e.pids = append(e.pids, pid)
	}
	return e
}

// retry repeats a write the apiserver failed while hub elected a new leader.
// done says whether an earlier, ambiguous attempt already took effect.
func retry(t *testing.T, what string, op func() error, done func(error) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for first := true; ; first = false {
		err := op()
		if err == nil || (!first && done(err)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s: %v (retrying)", what, err)
		time.Sleep(200 * time.Millisecond)
	}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v (%s)", what, timeout, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type suite struct {
	t   *testing.T
	ctx context.Context
	c   kubernetes.Interface
	env env
	ns  string
}

func TestControlPlaneOnHub(t *testing.T) {
	e := loadEnv(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", e.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	ctx := context.Background()
	s := &suite{t: t, ctx: ctx, c: kubernetes.NewForConfigOrDie(cfg), env: e, ns: fmt.Sprintf("hub-e2e-%d", time.Now().Unix())}
	s.namespace(s.ns)
	stopKubelet := s.fakeKubelet()
	defer stopKubelet()

	before := s.configMapsAndSecrets()
	s.leasesRenew("before the leader is killed")
	s.deployment()
	// The watch spans the leader kill: it must see every event, in order.
	s.watchInOrder(func() { s.killHubLeader() })
	s.sameObjects(before)
	s.scale()
	s.cascadingDelete()
	s.paginate()
	s.goneAfterCompaction()
	s.leasesRenew("after the leader was killed")
	s.consistentReadsFromCache()
}

func (s *suite) namespace(name string) {
	retry(s.t, "create namespace "+name, func() error {
		_, err := s.c.CoreV1().Namespaces().Create(s.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		return err
	}, apierrors.IsAlreadyExists)
	// Pods need the namespace's default ServiceAccount, and every namespace gets
	// the kube-root-ca.crt ConfigMap: both made by the controller-manager.
	waitFor(s.t, "default ServiceAccount and kube-root-ca.crt in "+name, time.Minute, func() (bool, string) {
		_, err := s.c.CoreV1().ServiceAccounts(name).Get(s.ctx, "default", metav1.GetOptions{})
		if err == nil {
			_, err = s.c.CoreV1().ConfigMaps(name).Get(s.ctx, "kube-root-ca.crt", metav1.GetOptions{})
		}
		return err == nil, fmt.Sprint(err)
	})
}

// fakeKubelet confirms the deletion of pods bound to a node, as a kubelet
// would once their containers stopped: without one they stay Terminating.
func (s *suite) fakeKubelet() func() {
	ctx, cancel := context.WithCancel(s.ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			pods, err := s.c.CoreV1().Pods(s.ns).List(ctx, metav1.ListOptions{})
			if err == nil {
				for _, p := range pods.Items {
					if p.DeletionTimestamp != nil {
						_ = s.c.CoreV1().Pods(s.ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	return func() { cancel(); wg.Wait() }
}

// configMapsAndSecrets writes, reads back, updates and deletes ConfigMaps and
// Secrets; it returns the survivors' resourceVersions by name.
func (s *suite) configMapsAndSecrets() map[string]string {
	t := s.t
	cms, secrets := s.c.CoreV1().ConfigMaps(s.ns), s.c.CoreV1().Secrets(s.ns)
	for i := range 20 {
		name := fmt.Sprintf("cm-%d", i)
		if _, err := cms.Create(s.ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"i": strconv.Itoa(i)}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("secret-%d", i)}, Data: map[string][]byte{"key": {0, byte(i), 0xff}}}
		if _, err := secrets.Create(s.ctx, secret, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cm, err := cms.Get(s.ctx, "cm-3", metav1.GetOptions{})
	if err != nil || cm.Data["i"] != "3" {
		t.Fatalf("cm-3: %v %v", cm, err)
	}
	cm.Data["i"] = "three"
	if _, err := cms.Update(s.ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm.Data["i"] = "stale"
	if _, err := cms.Update(s.ctx, cm, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("update with a stale resourceVersion: want 409 Conflict, got %v", err)
	}
	if err := cms.Delete(s.ctx, "cm-19", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	secret, err := secrets.Get(s.ctx, "secret-7", metav1.GetOptions{})
	if err != nil || !slices.Equal(secret.Data["key"], []byte{0, 7, 0xff}) {
		t.Fatalf("secret-7: %v %v", secret, err)
	}
	return s.objects()
}

// objects: every ConfigMap's and Secret's resourceVersion in the namespace.
func (s *suite) objects() map[string]string {
	out := map[string]string{}
	cms, err := s.c.CoreV1().ConfigMaps(s.ns).List(s.ctx, metav1.ListOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	for _, o := range cms.Items {
		if strings.HasPrefix(o.Name, "cm-") {
			out["configmap/"+o.Name] = o.ResourceVersion + " " + o.Data["i"]
		}
	}
	secrets, err := s.c.CoreV1().Secrets(s.ns).List(s.ctx, metav1.ListOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	for _, o := range secrets.Items {
		out["secret/"+o.Name] = o.ResourceVersion + " " + string(o.Data["key"])
	}
	return out
}

func (s *suite) sameObjects(before map[string]string) {
	if len(before) != 39 {
		s.t.Fatalf("want 19 ConfigMaps and 20 Secrets before the kill, got %d", len(before))
	}
	var after map[string]string
	waitFor(s.t, "every object written before the leader kill", 30*time.Second, func() (bool, string) {
		after = s.objects()
		return len(after) == len(before), fmt.Sprint(len(after))
	})
	for k, v := range before {
		if after[k] != v {
			s.t.Errorf("%s: before the kill %q, after %q", k, v, after[k])
		}
	}
}

func (s *suite) killHubLeader() {
	for i, ep := range s.env.endpoints {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 2 * time.Second})
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second)
		st, err := c.Status(ctx, ep)
		cancel()
		c.Close()
		if err == nil && st.Leader == st.Header.MemberId {
			s.t.Logf("killing the hub leader %s (pid %d) with SIGKILL", ep, s.env.pids[i])
			if err := syscall.Kill(s.env.pids[i], syscall.SIGKILL); err != nil {
				s.t.Fatal(err)
			}
			return
		}
	}
	s.t.Fatal("no hub member says it is the leader")
}

const app = "web"

func (s *suite) deploymentPods() (live, scheduled int, nodes map[string]int) {
	pods, err := s.c.CoreV1().Pods(s.ns).List(s.ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return -1, -1, nil
	}
	nodes = map[string]int{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		live++
		if p.Spec.NodeName != "" {
			scheduled++
			nodes[p.Spec.NodeName]++
		}
	}
	return live, scheduled, nodes
}

func (s *suite) waitForPods(n int) {
	waitFor(s.t, fmt.Sprintf("%d pods bound to nodes", n), 3*time.Minute, func() (bool, string) {
		live, scheduled, nodes := s.deploymentPods()
		return live == n && scheduled == n, fmt.Sprintf("%d pods, %d bound: %v", live, scheduled, nodes)
	})
}

func (s *suite) deployment() {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: app},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](50),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  "app",
					Image: "registry.invalid/never-pulled:1", // no kubelet runs it
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
						corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi"),
					}},
				}}},
			},
		},
	}
	if _, err := s.c.AppsV1().Deployments(s.ns).Create(s.ctx, d, metav1.CreateOptions{}); err != nil {
		s.t.Fatal(err)
	}
	s.waitForPods(50)
	_, _, nodes := s.deploymentPods()
	if len(nodes) < 2 {
		s.t.Errorf("the scheduler put all 50 pods on %v", nodes)
	}
	s.t.Logf("50 pods bound by the scheduler: %v", nodes)
}

func (s *suite) setReplicas(n int32) {
	retry(s.t, fmt.Sprintf("scale to %d", n), func() error {
		scale, err := s.c.AppsV1().Deployments(s.ns).GetScale(s.ctx, app, metav1.GetOptions{})
		if err != nil {
			return err
		}
		scale.Spec.Replicas = n
		_, err = s.c.AppsV1().Deployments(s.ns).UpdateScale(s.ctx, app, scale, metav1.UpdateOptions{})
		return err
	}, func(error) bool { return false })
}

func (s *suite) scale() {
	s.setReplicas(10)
	s.waitForPods(10)
	s.setReplicas(50)
	s.waitForPods(50)
}

func (s *suite) cascadingDelete() {
	retry(s.t, "delete the deployment", func() error {
		return s.c.AppsV1().Deployments(s.ns).Delete(s.ctx, app, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)})
	}, apierrors.IsNotFound)
	waitFor(s.t, "the deployment, its ReplicaSet and its pods gone", 3*time.Minute, func() (bool, string) {
		_, errD := s.c.AppsV1().Deployments(s.ns).Get(s.ctx, app, metav1.GetOptions{})
		rs, errRS := s.c.AppsV1().ReplicaSets(s.ns).List(s.ctx, metav1.ListOptions{})
		pods, errP := s.c.CoreV1().Pods(s.ns).List(s.ctx, metav1.ListOptions{})
		if err := errors.Join(errRS, errP); err != nil {
			return false, err.Error()
		}
		return apierrors.IsNotFound(errD) && len(rs.Items) == 0 && len(pods.Items) == 0,
			fmt.Sprintf("deployment: %v, %d replicasets, %d pods", errD, len(rs.Items), len(pods.Items))
	})
}

// watchInOrder watches ConfigMaps from a resourceVersion while creating,
// updating and deleting 40 of them (in the middle runs `meanwhile`), and
// requires exactly those 120 events, in order, with increasing resourceVersions.
func (s *suite) watchInOrder(meanwhile func()) {
	t := s.t
	cms := s.c.CoreV1().ConfigMaps(s.ns)
	list, err := cms.List(s.ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(s.ctx, 3*time.Minute)
	defer cancel()
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion, LabelSelector: "watched=yes"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	var want []string
	for i := range 40 {
		if i == 20 {
			meanwhile()
		}
		name := fmt.Sprintf("w-%d", i)
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"watched": "yes"}}, Data: map[string]string{"v": "1"}}
		retry(t, "create "+name, func() error { _, err := cms.Create(s.ctx, cm, metav1.CreateOptions{}); return err }, apierrors.IsAlreadyExists)
		retry(t, "update "+name, func() error {
			cur, err := cms.Get(s.ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if cur.Data["v"] == "2" {
				return nil // an earlier, ambiguous attempt took effect
			}
			cur.Data["v"] = "2"
			_, err = cms.Update(s.ctx, cur, metav1.UpdateOptions{})
			return err
		}, func(error) bool { return false })
		retry(t, "delete "+name, func() error { return cms.Delete(s.ctx, name, metav1.DeleteOptions{}) }, apierrors.IsNotFound)
		want = append(want, "ADDED "+name+" 1", "MODIFIED "+name+" 2", "DELETED "+name+" 2")
	}

	var got []string
	var last uint64
	for len(got) < len(want) {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("the watch ended after %d of %d events: %v", len(got), len(want), got)
			}
			cm, isCM := ev.Object.(*corev1.ConfigMap)
			if !isCM {
				t.Fatalf("watch event %s: %#v", ev.Type, ev.Object)
			}
			rv, err := strconv.ParseUint(cm.ResourceVersion, 10, 64)
			if err != nil || rv <= last {
				t.Fatalf("resourceVersion %q after %d", cm.ResourceVersion, last)
			}
			last = rv
			got = append(got, fmt.Sprintf("%s %s %s", ev.Type, cm.Name, cm.Data["v"]))
		case <-ctx.Done():
			t.Fatalf("%d of %d events within 3 minutes: %v", len(got), len(want), got)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("watch events:\n got %v\nwant %v", got, want)
	}
}

// paginate lists 1000 ConfigMaps 100 at a time; every page is read at the
// first page's resourceVersion, so ConfigMaps made meanwhile do not show.
func (s *suite) paginate() {
	t := s.t
	ns := s.ns + "-pages"
	s.namespace(ns)
	cms := s.c.CoreV1().ConfigMaps(ns)
	create := func(prefix string, n int) {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += 16 {
					cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%04d", prefix, i)}}
					if _, err := cms.Create(s.ctx, cm, metav1.CreateOptions{}); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	create("page", 1000)
	var names []string
	opts := metav1.ListOptions{Limit: 100}
	var rv string
	for pages := 0; ; pages++ {
		list, err := cms.List(s.ctx, opts)
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		if pages == 0 {
			rv = list.ResourceVersion
			create("late", 50)
		} else if list.ResourceVersion != rv {
			t.Fatalf("page %d at resourceVersion %s, the first at %s", pages, list.ResourceVersion, rv)
		}
		if len(list.Items) > 100 {
			t.Fatalf("page %d has %d items", pages, len(list.Items))
		}
		for _, o := range list.Items {
			names = append(names, o.Name)
		}
		if list.Continue == "" {
			break
		}
		opts.Continue = list.Continue
	}
	want := make([]string, 0, 1001)
	want = append(want, "kube-root-ca.crt")
	for i := range 1000 {
		want = append(want, fmt.Sprintf("page-%04d", i))
	}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("paginated list: %d names, want %d (first %v)", len(names), len(want), names[:min(5, len(names))])
	}
	s.t.Logf("1000 ConfigMaps in %d-item pages at resourceVersion %s", 100, rv)
}

// goneAfterCompaction waits until the apiserver's compactor compacted hub past
// a PodTemplate's resourceVersion, then watches PodTemplates (which have no
// watch cache, so hub answers) from it: 410 Gone.
func (s *suite) goneAfterCompaction() {
	t := s.t
	templates := s.c.CoreV1().PodTemplates(s.ns)
	pt := &corev1.PodTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "compacted"},
		Template:   corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.invalid/x:1"}}}},
	}
	pt, err := templates.Create(s.ctx, pt, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rv := pt.ResourceVersion
	old, _ := strconv.ParseInt(rv, 10, 64)
	etcd, err := clientv3.New(clientv3.Config{Endpoints: s.env.endpoints, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	waitFor(t, "the apiserver compacting hub past "+rv, 2*time.Minute, func() (bool, string) {
		_, err := etcd.Get(s.ctx, "/registry/podtemplates/"+s.ns+"/compacted", clientv3.WithRev(old))
		return err != nil && strings.Contains(err.Error(), "required revision has been compacted"), fmt.Sprint(err)
	})
	w, err := templates.Watch(s.ctx, metav1.ListOptions{ResourceVersion: rv})
	if err != nil {
		if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
			t.Fatalf("watch from compacted %s: want 410 Gone, got %v", rv, err)
		}
		t.Logf("watch from compacted resourceVersion %s: %v", rv, err)
		return
	}
	defer w.Stop()
	select {
	case ev := <-w.ResultChan():
		st, ok := ev.Object.(*metav1.Status)
		if ev.Type != watch.Error || !ok || st.Code != 410 {
			t.Fatalf("watch from compacted %s: want an ERROR event with 410 Gone, got %s %#v", rv, ev.Type, ev.Object)
		}
		t.Logf("watch from compacted resourceVersion %s: %d %s", rv, st.Code, st.Message)
	case <-time.After(30 * time.Second):
		t.Fatal("watch from a compacted resourceVersion: no answer in 30s")
	}
}

// consistentReadsFromCache: the apiserver served consistent lists from its
// watch cache (it does so only when hub's version says watch progress
// requests work, and then relies on them).
func (s *suite) consistentReadsFromCache() {
	metrics, err := s.c.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(s.ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	served := 0
	for _, line := range strings.Split(string(metrics), "\n") {
		if strings.HasPrefix(line, "apiserver_watch_cache_consistent_read_total{") &&
			strings.Contains(line, `fallback="false"`) && strings.Contains(line, `success="true"`) {
			n, _ := strconv.Atoi(line[strings.LastIndex(line, " ")+1:])
			served += n
		}
	}
	if served == 0 {
		s.t.Fatal("the apiserver served no consistent read from its watch cache")
	}
	s.t.Logf("%d consistent reads served from the watch cache", served)
}

// leasesRenew: the scheduler's and controller-manager's leader-election
// Leases have holders and their renewTime moves on.
func (s *suite) leasesRenew(when string) {
	renewed := func(name string) (time.Time, string) {
		l, err := s.c.CoordinationV1().Leases("kube-system").Get(s.ctx, name, metav1.GetOptions{})
		if err != nil || l.Spec.RenewTime == nil || l.Spec.HolderIdentity == nil {
			return time.Time{}, fmt.Sprint(err)
		}
		return l.Spec.RenewTime.Time, *l.Spec.HolderIdentity
	}
	for _, name := range []string{"kube-scheduler", "kube-controller-manager"} {
		var first time.Time
		waitFor(s.t, name+" Lease held", 2*time.Minute, func() (bool, string) {
			var holder string
			first, holder = renewed(name)
			return !first.IsZero(), holder
		})
		waitFor(s.t, name+" Lease renewed "+when, 30*time.Second, func() (bool, string) {
			now, holder := renewed(name)
			return now.After(first), holder
		})
	}
}
