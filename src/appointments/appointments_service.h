// hospital.appointments.v1.AppointmentsService: validates requests, calls the repository,
// counts business events. See protos/hospital/appointments/v1/appointments.proto.
#ifndef HOSPITAL_SRC_APPOINTMENTS_APPOINTMENTS_SERVICE_H_
#define HOSPITAL_SRC_APPOINTMENTS_APPOINTMENTS_SERVICE_H_

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "appointments/appointments_repository.h"
#include "base/clock.h"
#include "hospital/appointments/v1/appointments.grpc.pb.h"

namespace appointments {

namespace v1 = hospital::appointments::v1;

class AppointmentsService final : public v1::AppointmentsService::Service {
 public:
  AppointmentsService(AppointmentsRepository& repository, base::Clock& clock,
                      prometheus::Registry& metrics);

  grpc::Status ScheduleAppointment(grpc::ServerContext* context,
                                   const v1::ScheduleAppointmentRequest* request,
                                   Appointment* response) override;
  grpc::Status GetAppointment(grpc::ServerContext* context,
                              const v1::GetAppointmentRequest* request,
                              Appointment* response) override;
  grpc::Status ListAppointments(grpc::ServerContext* context,
                                const v1::ListAppointmentsRequest* request,
                                v1::ListAppointmentsResponse* response) override;
  grpc::Status CancelAppointment(grpc::ServerContext* context,
                                 const v1::CancelAppointmentRequest* request,
                                 Appointment* response) override;
  grpc::Status CancelPatientAppointments(grpc::ServerContext* context,
                                         const v1::CancelPatientAppointmentsRequest* request,
                                         v1::CancelPatientAppointmentsResponse* response) override;
  grpc::Status RestorePatientAppointments(
      grpc::ServerContext* context, const v1::RestorePatientAppointmentsRequest* request,
      v1::RestorePatientAppointmentsResponse* response) override;

 private:
  AppointmentsRepository& repository_;
  base::Clock& clock_;
  prometheus::Counter& scheduled_;
  prometheus::Counter& refused_deceased_;
  prometheus::Counter& cancelled_single_;
  prometheus::Counter& cancelled_for_patient_;
  prometheus::Counter& restored_;
  prometheus::Counter& replayed_for_patient_;
};

}  // namespace appointments

#endif  // HOSPITAL_SRC_APPOINTMENTS_APPOINTMENTS_SERVICE_H_
